//! gitlab-runner's own configuration vocabulary, to catch typos (issue 12):
//! its global keys, its `[[runners]]` keys, the keys of each executor's
//! table and its executor names, and the rules that use them. A near miss
//! of a key this tool consumes (`tag` for `tags`) or of an executor name
//! (`shel`) is refused with "did you mean"; any other unknown key or
//! executor is a warning (with a suggestion when one is close), because
//! gitlab-runner keeps adding keys and executors, and sites run their own
//! (LLNL's `batch`).
//!
//! The lists are gitlab-runner 19.4.0's (commit d79f3e7b, August 2026):
//! the `toml:"…"` tags of `Config`, `RunnerConfig` (with the embedded
//! `RunnerCredentials` and `RunnerSettings`) and each executor's config
//! struct in `common/config.go` (`DockerConfig` with the embedded
//! `helpers/docker.Credentials`; a field without a tag is matched by its
//! Go name), and the executor providers registered in `main.go`
//! (`newExecutorProviders`). gitlab-runner's decoder matches keys
//! case-insensitively, so the comparisons here do too.

use super::keys::{fold_char, folded_key};

/// The version the lists below were taken from.
pub const GITLAB_RUNNER_VERSION: &str = "19.4.0";

/// `newExecutorProviders` in gitlab-runner's `main.go`.
pub const EXECUTORS: &[&str] = &[
    "custom",
    "docker",
    "docker+machine",
    "docker-autoscaler",
    "docker-windows",
    "instance",
    "kubernetes",
    "parallels",
    "shell",
    "ssh",
    "virtualbox",
];

// Keys from gitlab-runner 19.4.0's common/config.go (see the module doc).
pub const GLOBAL_KEYS: &[&str] = &[
    "check_interval",
    "concurrent",
    "connection_max_age",
    "experimental",
    "labels",
    "listen_address",
    "log_format",
    "log_level",
    "machine",
    "runners",
    "sentry_dsn",
    "session_server",
    "shutdown_timeout",
    "user",
];
pub const RUNNER_KEYS: &[&str] = &[
    "artifact",
    "autoscaler",
    "builds_dir",
    "cache",
    "cache_dir",
    "clean_git_config",
    "clone_url",
    "custom",
    "custom_build_dir",
    "debug_trace_disabled",
    "docker",
    "environment",
    "executor",
    "experimental",
    "feature_flags",
    "get_sources_timeout",
    "id",
    "instance",
    "job_status_final_update_retry_limit",
    "kubernetes",
    "labels",
    "limit",
    "machine",
    "monitoring",
    "name",
    "output_limit",
    "parallels",
    "post_build_script",
    "post_get_sources_script",
    "pre_build_script",
    "pre_get_sources_script",
    "prepare_timeout",
    "proxy_exec",
    "referees",
    "request_concurrency",
    "safe_directory_checkout",
    "shell",
    "slot_cgroup_template",
    "ssh",
    "step_runner_image",
    "strict_check_interval",
    "tls-ca-file",
    "tls-cert-file",
    "tls-key-file",
    "token",
    "token_expires_at",
    "token_obtained_at",
    "unhealthy_interval",
    "unhealthy_requests_limit",
    "url",
    "use_slot_cgroups",
    "virtualbox",
];
pub const DOCKER_KEYS: &[&str] = &[
    "allowed_images",
    "allowed_privileged_images",
    "allowed_privileged_services",
    "allowed_pull_policies",
    "allowed_services",
    "allowed_users",
    "cache_dir",
    "cap_add",
    "cap_drop",
    "cgroup_parent",
    "container_labels",
    "cpu_shares",
    "cpus",
    "cpuset_cpus",
    "cpuset_mems",
    "device_cgroup_rules",
    "devices",
    "disable_cache",
    "disable_entrypoint_overwrite",
    "dns",
    "dns_search",
    "enable_ipv6",
    "extra_hosts",
    "gpus",
    "group_add",
    "helper_image",
    "helper_image_flavor",
    "host",
    "hostname",
    "image",
    "ipcmode",
    "isolation",
    "links",
    "log_options",
    "mac_address",
    "memory",
    "memory_reservation",
    "memory_swap",
    "network_mode",
    "network_mtu",
    "oom_kill_disable",
    "oom_score_adjust",
    "pid_mode",
    "privileged",
    "pull_policy",
    "runtime",
    "security_opt",
    "service_cgroup_parent",
    "service_cpu_shares",
    "service_cpus",
    "service_cpuset_cpus",
    "service_gpus",
    "service_memory",
    "service_memory_reservation",
    "service_memory_swap",
    "service_slot_cgroup_template",
    "services",
    "services_devices",
    "services_limit",
    "services_privileged",
    "services_security_opt",
    "services_tmpfs",
    "shm_size",
    "sysctls",
    "tls_cert_path",
    "tls_verify",
    "tmpfs",
    "ulimit",
    "user",
    "userns_mode",
    "volume_driver",
    "volume_driver_ops",
    "volume_keep",
    "volumes",
    "volumes_from",
    "wait_for_services_timeout",
];
pub const KUBERNETES_KEYS: &[&str] = &[
    "affinity",
    "allow_privilege_escalation",
    "allowed_groups",
    "allowed_images",
    "allowed_pull_policies",
    "allowed_services",
    "allowed_users",
    "automount_service_account_token",
    "autoscaler",
    "bearer_token",
    "bearer_token_overwrite_allowed",
    "build_container_security_context",
    "ca_file",
    "cap_add",
    "cap_drop",
    "cert_file",
    "cleanup_grace_period_seconds",
    "cleanup_resources_timeout",
    "container_lifecycle",
    "context",
    "cpu_limit",
    "cpu_limit_overwrite_max_allowed",
    "cpu_request",
    "cpu_request_overwrite_max_allowed",
    "dns_config",
    "dns_policy",
    "ephemeral_storage_limit",
    "ephemeral_storage_limit_overwrite_max_allowed",
    "ephemeral_storage_request",
    "ephemeral_storage_request_overwrite_max_allowed",
    "helper_container_security_context",
    "helper_cpu_limit",
    "helper_cpu_limit_overwrite_max_allowed",
    "helper_cpu_request",
    "helper_cpu_request_overwrite_max_allowed",
    "helper_ephemeral_storage_limit",
    "helper_ephemeral_storage_limit_overwrite_max_allowed",
    "helper_ephemeral_storage_request",
    "helper_ephemeral_storage_request_overwrite_max_allowed",
    "helper_image",
    "helper_image_autoset_arch_and_os",
    "helper_image_flavor",
    "helper_memory_limit",
    "helper_memory_limit_overwrite_max_allowed",
    "helper_memory_request",
    "helper_memory_request_overwrite_max_allowed",
    "host",
    "host_aliases",
    "image",
    "image_pull_secrets",
    "init_permissions_container_security_context",
    "key_file",
    "logs_base_dir",
    "memory_limit",
    "memory_limit_overwrite_max_allowed",
    "memory_request",
    "memory_request_overwrite_max_allowed",
    "namespace",
    "namespace_overwrite_allowed",
    "namespace_per_job",
    "node_selector",
    "node_selector_overwrite_allowed",
    "node_tolerations",
    "node_tolerations_overwrite_allowed",
    "pod_annotations",
    "pod_annotations_overwrite_allowed",
    "pod_cpu_limit",
    "pod_cpu_limit_overwrite_max_allowed",
    "pod_cpu_request",
    "pod_cpu_request_overwrite_max_allowed",
    "pod_disruption_budget",
    "pod_labels",
    "pod_labels_overwrite_allowed",
    "pod_memory_limit",
    "pod_memory_limit_overwrite_max_allowed",
    "pod_memory_request",
    "pod_memory_request_overwrite_max_allowed",
    "pod_security_context",
    "pod_spec",
    "pod_termination_grace_period_seconds",
    "poll_interval",
    "poll_timeout",
    "print_pod_warning_events",
    "priority_class_name",
    "privileged",
    "pull_policy",
    "resource_availability_check_max_attempts",
    "retry_backoff_max",
    "retry_limit",
    "retry_limits",
    "runtime_class_name",
    "scheduler_name",
    "scripts_base_dir",
    "service_account",
    "service_account_overwrite_allowed",
    "service_container_security_context",
    "service_cpu_limit",
    "service_cpu_limit_overwrite_max_allowed",
    "service_cpu_request",
    "service_cpu_request_overwrite_max_allowed",
    "service_ephemeral_storage_limit",
    "service_ephemeral_storage_limit_overwrite_max_allowed",
    "service_ephemeral_storage_request",
    "service_ephemeral_storage_request_overwrite_max_allowed",
    "service_memory_limit",
    "service_memory_limit_overwrite_max_allowed",
    "service_memory_request",
    "service_memory_request_overwrite_max_allowed",
    "services",
    "suspend_pvc_size",
    "suspend_pvc_storage_class",
    "use_service_account_image_pull_secrets",
    "volumes",
];
pub const CUSTOM_KEYS: &[&str] = &[
    "cleanup_args",
    "cleanup_exec",
    "cleanup_exec_timeout",
    "config_args",
    "config_exec",
    "config_exec_timeout",
    "force_kill_timeout",
    "graceful_kill_timeout",
    "prepare_args",
    "prepare_exec",
    "prepare_exec_timeout",
    "run_args",
    "run_exec",
];
pub const SSH_KEYS: &[&str] = &[
    "disable_strict_host_key_checking",
    "host",
    "identity_file",
    "known_hosts_file",
    "password",
    "port",
    "user",
];
pub const PARALLELS_KEYS: &[&str] = &[
    "allowed_images",
    "base_name",
    "disable_snapshots",
    "template_name",
    "time_server",
];
pub const VIRTUALBOX_KEYS: &[&str] = &[
    "allowed_images",
    "base_folder",
    "base_name",
    "base_snapshot",
    "disable_snapshots",
    "start_type",
];
pub const MACHINE_KEYS: &[&str] = &[
    "IdleCount",
    "IdleCountMin",
    "IdleScaleFactor",
    "IdleTime",
    "MachineDriver",
    "MachineName",
    "MachineOptions",
    "MachineOptionsWithName",
    "MaxBuilds",
    "MaxGrowthRate",
    "MaxRemovalAttempts",
    "OffPeakIdleCount",
    "OffPeakIdleTime",
    "OffPeakPeriods",
    "OffPeakTimezone",
    "autoscaling",
];
pub const INSTANCE_KEYS: &[&str] = &["allowed_images", "use_common_build_dir"];
pub const AUTOSCALER_KEYS: &[&str] = &[
    "capacity_per_instance",
    "connector_config",
    "delete_instances_on_shutdown",
    "deletion_retry_interval",
    "failure_threshold",
    "instance_acquire_timeout",
    "instance_creation_time_buckets",
    "instance_deletion_time_buckets",
    "instance_is_running_time_buckets",
    "instance_life_duration_buckets",
    "instance_operation_time_buckets",
    "instance_readiness_time_buckets",
    "instance_ready_command",
    "log_external_ip",
    "log_internal_ip",
    "max_instances",
    "max_use_count",
    "plugin",
    "plugin_config",
    "policy",
    "reservation_throttling",
    "scale_throttle",
    "shutdown_deletion_interval",
    "shutdown_deletion_retries",
    "state_storage",
    "update_interval",
    "update_interval_when_expecting",
    "vm_isolation",
];

/// The executor tables of `[[runners]]` and the keys each one knows.
pub const EXECUTOR_TABLES: &[(&str, &[&str])] = &[
    ("autoscaler", AUTOSCALER_KEYS),
    ("custom", CUSTOM_KEYS),
    ("docker", DOCKER_KEYS),
    ("instance", INSTANCE_KEYS),
    ("kubernetes", KUBERNETES_KEYS),
    ("machine", MACHINE_KEYS),
    ("parallels", PARALLELS_KEYS),
    ("ssh", SSH_KEYS),
    ("virtualbox", VIRTUALBOX_KEYS),
];

/// Other names of a key this tool consumes: GitLab's API and
/// `gitlab-runner register` spell tags `tag_list` / `--tag-list`.
const ALIASES: &[(&str, &str)] = &[("tag_list", "tags"), ("taglist", "tags")];

/// What a check found: a typo to refuse, or something unknown to warn of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Refuse(String),
    Warn(String),
}

/// A key or name compared as gitlab-runner's decoder and an operator's
/// eye do: case folded, `-` read as `_`.
fn normal(word: &str) -> String {
    folded_key(word).replace('-', "_")
}

/// Whether `a` and `b` are a near miss of each other: an edit or two
/// apart (one for short words), case and `-`/`_` ignored.
fn near(a: &str, b: &str) -> bool {
    let (a, b) = (normal(a), normal(b));
    let longest = a.chars().count().max(b.chars().count());
    let limit = if longest <= 4 { 1 } else { 2 };
    strsim::damerau_levenshtein(&a, &b) <= limit
}

/// The closest of `candidates` to `word` that is a near miss, if any.
fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let w = normal(word);
    candidates
        .into_iter()
        .filter(|c| near(word, c))
        .min_by_key(|c| strsim::damerau_levenshtein(&w, &normal(c)))
}

/// Whether gitlab-runner knows `key` among `known` (case-insensitively).
fn knows(known: &[&str], key: &str) -> bool {
    known.iter().any(|k| same_key(k, key))
}

/// `a` and `b` are one key to gitlab-runner: [`folded_key`] without its
/// allocations (a restart checks every key of every executor file against
/// hundreds of known ones).
fn same_key(a: &str, b: &str) -> bool {
    a.chars().map(fold_char).eq(b.chars().map(fold_char))
}

/// The `executor` value: a known name is fine; a near miss of one (or a
/// known name in another case, which gitlab-runner would not find) is
/// refused; anything else is a warning.
pub fn check_executor_name(name: &str) -> Option<Finding> {
    if EXECUTORS.contains(&name) {
        return None;
    }
    if let Some(known) = closest(name, EXECUTORS.iter().copied()) {
        return Some(Finding::Refuse(format!(
            "unknown executor `{name}`: did you mean `{known}`?"
        )));
    }
    Some(Finding::Warn(format!(
        "executor `{name}` is not one gitlab-runner {GITLAB_RUNNER_VERSION} knows ({}); passed through as written",
        EXECUTORS.join(", ")
    )))
}

/// A top-level key of an executor file (the inside of `[[runners]]`).
/// `consumed`: the keys this tool reads itself.
pub fn check_runner_key<'a>(
    key: &str,
    consumed: impl IntoIterator<Item = &'a str> + Clone,
) -> Option<Finding> {
    check_key(key, RUNNER_KEYS, consumed, "a `[[runners]]` key")
}

/// A top-level key of the template (gitlab-runner's global section).
pub fn check_global_key(key: &str) -> Option<Finding> {
    check_key(key, GLOBAL_KEYS, ["client_configs"], "a global key")
}

/// A key of an executor's table (`[docker]`, `[kubernetes]`, …) of an
/// executor file; `None` for a table gitlab-runner has no list for here.
pub fn check_executor_table_key(table: &str, key: &str) -> Option<Finding> {
    let (_, known) = EXECUTOR_TABLES.iter().find(|(t, _)| same_key(t, table))?;
    if knows(known, key) {
        return None;
    }
    Some(Finding::Warn(unknown_message(
        key,
        &format!("a `[{table}]` key"),
        closest(key, known.iter().copied()),
    )))
}

fn check_key<'a>(
    key: &str,
    known: &[&str],
    consumed: impl IntoIterator<Item = &'a str> + Clone,
    what: &str,
) -> Option<Finding> {
    if knows(known, key) || consumed.clone().into_iter().any(|c| same_key(c, key)) {
        return None;
    }
    let alias = ALIASES
        .iter()
        .find(|(alias, _)| normal(alias) == normal(key))
        .map(|(_, to)| *to)
        .filter(|to| consumed.clone().into_iter().any(|c| c == *to));
    if let Some(meant) = alias.or_else(|| closest(key, consumed.clone())) {
        return Some(Finding::Refuse(format!(
            "unknown key: did you mean `{meant}`? (register-runner reads `{meant}` itself; \
             this spelling would pass into config.toml and be ignored)"
        )));
    }
    Some(Finding::Warn(unknown_message(
        key,
        what,
        closest(key, known.iter().copied()),
    )))
}

fn unknown_message(key: &str, what: &str, suggestion: Option<&str>) -> String {
    let hint = suggestion
        .map(|s| format!("did you mean `{s}`? "))
        .unwrap_or_default();
    format!(
        "`{key}` is not {what} gitlab-runner {GITLAB_RUNNER_VERSION} knows: {hint}\
         it is passed through as written (a newer gitlab-runner may know it)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSUMED: &[&str] = &[
        "url",
        "executor",
        "name",
        "token",
        "env_tags",
        "tags",
        "run_untagged",
        "locked",
        "paused",
        "access_level",
        "maximum_timeout",
        "maintenance_note",
    ];

    fn runner(key: &str) -> Option<Finding> {
        check_runner_key(key, CONSUMED.iter().copied())
    }

    fn refused_for(finding: Option<Finding>, meant: &str) {
        match finding {
            Some(Finding::Refuse(m)) => {
                assert!(m.contains(&format!("did you mean `{meant}`?")), "{m}")
            }
            other => panic!("expected a refusal naming `{meant}`, got {other:?}"),
        }
    }

    #[test]
    fn near_misses_of_consumed_keys_are_refused() {
        refused_for(runner("tag"), "tags");
        refused_for(runner("env_tag"), "env_tags");
        refused_for(runner("run_untaged"), "run_untagged");
        refused_for(runner("tag_list"), "tags");
        refused_for(runner("run-untagged"), "run_untagged");
        refused_for(runner("lock"), "locked");
        refused_for(runner("maximum_timout"), "maximum_timeout");
    }

    #[test]
    fn known_and_consumed_keys_pass() {
        for key in [
            "tags",
            "limit",
            "builds_dir",
            "environment",
            "docker",
            "cache",
            "shell",
            "feature_flags",
            "tls-ca-file",
            "request_concurrency",
            "BUILDS_DIR",
            // Go's EqualFold: the Kelvin sign is a `k`, the long s an `s`.
            "\u{212A}ubernetes",
            "\u{017F}hell",
        ] {
            assert_eq!(runner(key), None, "{key}");
        }
    }

    #[test]
    fn other_unknown_keys_warn_with_a_suggestion_when_close() {
        match runner("build_dir") {
            Some(Finding::Warn(m)) => assert!(m.contains("did you mean `builds_dir`?"), "{m}"),
            other => panic!("{other:?}"),
        }
        match runner("site_specific_setting") {
            Some(Finding::Warn(m)) => {
                assert!(!m.contains("did you mean"), "{m}");
                assert!(m.contains("passed through"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        match check_global_key("concurent") {
            Some(Finding::Warn(m)) => assert!(m.contains("did you mean `concurrent`?"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(check_global_key("concurrent"), None);
        assert_eq!(check_global_key("client_configs"), None);
        refused_for(check_global_key("client_config"), "client_configs");
    }

    #[test]
    fn executor_names() {
        for known in EXECUTORS {
            assert_eq!(check_executor_name(known), None);
        }
        refused_for(check_executor_name("shel"), "shell");
        refused_for(check_executor_name("Shell"), "shell");
        refused_for(check_executor_name("kubernets"), "kubernetes");
        refused_for(check_executor_name("docker_machine"), "docker+machine");
        for unknown in ["batch", "jacamar", "podman"] {
            assert!(
                matches!(check_executor_name(unknown), Some(Finding::Warn(_))),
                "{unknown}"
            );
        }
    }

    #[test]
    fn executor_table_keys() {
        assert_eq!(check_executor_table_key("docker", "image"), None);
        assert_eq!(check_executor_table_key("docker", "tls_verify"), None);
        assert_eq!(check_executor_table_key("machine", "idlecount"), None);
        assert_eq!(check_executor_table_key("cache", "anything"), None);
        match check_executor_table_key("docker", "imag") {
            Some(Finding::Warn(m)) => assert!(m.contains("did you mean `image`?"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
