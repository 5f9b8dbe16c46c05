//! Whose a runner is: the other instances on this prefix
//! ([`Neighbours`]), who made a runner ([`GitLabContext::made_in_ui`]), and
//! whether a runner found only by the listing is this host's
//! ([`ownership`], also used by observe before it restores a token).

use crate::gitlab::{ListedRunner, RunnerDetails};
use crate::secret::Secret;
use crate::store::OtherInstance;

use super::{GitLabContext, Listing};

/// The other instances on this prefix, as far as one GitLab goes: which of
/// its runners they hold, and their instance tags.
pub struct Neighbours<'a> {
    url: &'a str,
    /// This instance's name.
    pub(super) this: &'a str,
    instances: &'a [OtherInstance],
}

impl<'a> Neighbours<'a> {
    pub fn new(instances: &'a [OtherInstance], url: &'a str, this: &'a str) -> Neighbours<'a> {
        Neighbours {
            url,
            this,
            instances,
        }
    }

    /// The instance whose last output holds this runner (by id or token).
    pub fn holder(&self, id: Option<u64>, token: Option<&Secret>) -> Option<&'a str> {
        self.instances
            .iter()
            .find(|o| {
                o.held.iter().any(|(url, held_id, held_token)| {
                    url == self.url
                        && (id.is_some_and(|id| id != 0 && id == *held_id)
                            || token.is_some_and(|t| t == held_token))
                })
            })
            .map(|o| o.name.as_str())
    }

    /// The names of the other instances: each is the instance tag of its runners.
    pub fn names(&self) -> Vec<String> {
        self.instances.iter().map(|o| o.name.clone()).collect()
    }
}

/// Who made a runner, as far as this host can tell from a token and the
/// listing of runners carrying its identifying tags (gitlab-runner's
/// `unregister` line: a `glrt-` runner without them was made in GitLab's UI;
/// a registration-token runner was made by this tool or the original).
impl GitLabContext<'_> {
    /// Known to be a UI runner: a `glrt-` token not in the listing, or any
    /// `glrt-` token where there is no PAT (the tool cannot make one then).
    pub(super) fn made_in_ui(&self, token: &Secret, id: Option<u64>) -> bool {
        token.is_created_runner_token()
            && match &self.seen.listing {
                Listing::Listed(_) => !id.is_some_and(|id| self.listed_ids.contains(&id)),
                Listing::NoPat => true,
                Listing::Failed(_) => false,
            }
    }

    /// Known to be this tool's: a registration-token runner, or a listed one.
    pub(super) fn surely_tool_made(&self, token: &Secret, id: Option<u64>) -> bool {
        !token.is_created_runner_token()
            || (matches!(self.seen.listing, Listing::Listed(_))
                && id.is_some_and(|id| self.listed_ids.contains(&id)))
    }

    /// Whether a listed runner is this instance's to delete or restore:
    /// held by no other instance here, and this host's by [`ownership`].
    pub(super) fn owns(&self, runner: &ListedRunner) -> Result<(), String> {
        if let Some(holder) = self.others.holder(Some(runner.id), None) {
            return Err(format!("instance `{holder}` on this prefix holds it"));
        }
        ownership(
            runner,
            self.seen.managers.get(&runner.id),
            self.seen.details.get(&runner.id),
            |name| self.tags_of(name),
            &self.seen.system_id,
            &self.seen.name_prefix,
            &Instances {
                this: self.others.this,
                others: &self.other_names,
            },
        )
    }
}

/// This instance and the others configured on its prefix.
#[derive(Debug, Clone, Copy)]
pub struct Instances<'a> {
    pub this: &'a str,
    pub others: &'a [String],
}

/// Whether a runner found only by the listing (its identifying tags) is
/// this host's to delete or restore. A host name without digits has tags
/// that are a subset of its siblings' (`ci-node`, `ci-node01`), and a host
/// can be named like another's tag: so its managers must all be this host's;
/// with none (never started, or gone stale after 7 days), its name must be
/// this host's default one, or an executor's here with no tag that
/// executor lacks. `tags_of(name)`: the tags of this host's executor of
/// that name.
pub fn ownership<'t>(
    runner: &ListedRunner,
    managers: Option<&Result<Vec<String>, String>>,
    details: Option<&Result<RunnerDetails, String>>,
    tags_of: impl Fn(&str) -> Option<&'t [String]>,
    system_id: &str,
    name_prefix: &str,
    instances: &Instances<'_>,
) -> Result<(), String> {
    // Instances on one host share its system id, so managers cannot tell
    // them apart: a runner carrying another instance's tag may be that
    // instance's (SPEC §3). Its token is held by no config here (those are
    // never listed candidates), so it is ambiguous and left alone.
    if !instances.others.is_empty() {
        match details {
            Some(Ok(details)) => {
                if let Some(other) = instances
                    .others
                    .iter()
                    .find(|i| details.tag_list.contains(i))
                {
                    return Err(format!(
                        "it also carries `{other}`, the instance tag of instance `{other}` on this prefix, and \
                         neither `{this}`'s config nor `{other}`'s holds its token, so it may be `{other}`'s \
                         (if it is a leftover of neither, delete it in GitLab)",
                        this = instances.this
                    ));
                }
            }
            Some(Err(e)) => {
                return Err(format!(
                    "its tags cannot be read ({e}) and other instances share this prefix"
                ));
            }
            None => {
                return Err("its tags were not read and other instances share this prefix".into());
            }
        }
    }
    match managers {
        Some(Ok(system_ids)) if !system_ids.is_empty() => {
            match system_ids.iter().find(|s| *s != system_id) {
                Some(other) => Err(format!("another host (system id {other}) uses it")),
                None => Ok(()),
            }
        }
        Some(Ok(_)) => {
            let name = runner.description.as_deref().unwrap_or_default();
            if name.starts_with(name_prefix) {
                return Ok(());
            }
            match (tags_of(name), details) {
                (Some(tags), Some(Ok(details)))
                    if details.tag_list.iter().all(|t| tags.contains(t)) =>
                {
                    Ok(())
                }
                _ => {
                    Err("no host uses it and neither its name nor its tags are this host's".into())
                }
            }
        }
        Some(Err(e)) => Err(format!("its managers cannot be read ({e})")),
        None => Err("its managers were not read".into()),
    }
}
