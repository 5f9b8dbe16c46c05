//! GitLab's offset pagination (`page`, `per_page`: default 20, at most 100)
//! and its response headers: `x-page`, `x-per-page`, `x-next-page` (empty on
//! the last page), `x-prev-page`, `x-total`, `x-total-pages` and `Link` with
//! `prev`/`next`/`first`/`last` (counts and `last` omitted above 10 000 items).

use serde_json::Value;

use crate::error::ApiError;
use crate::knobs::ListingFault;
use crate::params::Params;
use crate::pipeline::Ctx;

const DEFAULT_PER_PAGE: u64 = 20;
const MAX_PER_PAGE: u64 = 100;
/// Above this many items GitLab stops counting.
const COUNT_LIMIT: usize = 10_000;

/// The requested page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageRequest {
    pub page: u64,
    pub per_page: u64,
}

/// Reads `page` and `per_page` (400 if they are not integers).
pub(crate) fn page_request(params: &Params) -> Result<PageRequest, ApiError> {
    let page = params.integer("page")?.unwrap_or(1);
    let per_page = params
        .integer("per_page")?
        .unwrap_or(DEFAULT_PER_PAGE as i64);
    let page = u64::try_from(page).ok().filter(|p| *p >= 1).unwrap_or(1);
    let per_page = u64::try_from(per_page)
        .ok()
        .filter(|p| *p >= 1)
        .unwrap_or(DEFAULT_PER_PAGE)
        .min(MAX_PER_PAGE);
    Ok(PageRequest { page, per_page })
}

/// One page of `items` and the headers that describe it.
pub(crate) fn paginate<T>(
    items: Vec<T>,
    req: PageRequest,
    ctx: &Ctx,
) -> (Vec<T>, Vec<(&'static str, String)>) {
    let total = items.len();
    let total_u64 = total as u64;
    let total_pages = total_u64.div_ceil(req.per_page).max(1);
    let start = (req.page - 1).saturating_mul(req.per_page);
    let page_items: Vec<T> = items
        .into_iter()
        .skip(usize::try_from(start).unwrap_or(usize::MAX))
        .take(usize::try_from(req.per_page).unwrap_or(usize::MAX))
        .collect();
    let out_of_range = req.page > total_pages;
    let next = (req.page < total_pages).then_some(req.page + 1);
    let prev = (req.page > 1 && !out_of_range).then_some(req.page - 1);
    let counted = total <= COUNT_LIMIT;

    let mut links = Vec::new();
    if let Some(p) = prev {
        links.push(format!(
            "<{}>; rel=\"prev\"",
            page_href(ctx, p, req.per_page)
        ));
    }
    if let Some(p) = next {
        links.push(format!(
            "<{}>; rel=\"next\"",
            page_href(ctx, p, req.per_page)
        ));
    }
    links.push(format!(
        "<{}>; rel=\"first\"",
        page_href(ctx, 1, req.per_page)
    ));
    if counted {
        links.push(format!(
            "<{}>; rel=\"last\"",
            page_href(ctx, total_pages, req.per_page)
        ));
    }

    let opt = |p: Option<u64>| p.map(|p| p.to_string()).unwrap_or_default();
    let mut headers = vec![
        ("x-per-page", req.per_page.to_string()),
        ("x-page", req.page.to_string()),
        ("x-next-page", opt(next)),
        ("x-prev-page", opt(prev)),
        ("link", links.join(", ")),
    ];
    if counted {
        headers.push(("x-total", total.to_string()));
        headers.push(("x-total-pages", total_pages.to_string()));
    }
    (page_items, headers)
}

/// Applies the `ListingFault` knob to a page's headers.
pub(crate) fn break_next(
    headers: &mut Vec<(&'static str, String)>,
    fault: ListingFault,
    req: PageRequest,
    ctx: &Ctx,
) {
    let next_link = |h: &str| h.contains("rel=\"next\"");
    for (name, value) in headers.iter_mut() {
        if *name != "link" {
            continue;
        }
        let mut links: Vec<String> = value
            .split(", ")
            .filter(|l| !next_link(l))
            .map(str::to_string)
            .collect();
        if fault == ListingFault::NextPageRepeats {
            links.insert(
                0,
                format!("<{}>; rel=\"next\"", page_href(ctx, req.page, req.per_page)),
            );
        }
        *value = links.join(", ");
    }
    match fault {
        ListingFault::NoNextPage => headers.retain(|(name, _)| *name != "x-next-page"),
        ListingFault::NextPageRepeats => {
            for (name, value) in headers.iter_mut() {
                if *name == "x-next-page" {
                    *value = req.page.to_string();
                }
            }
        }
    }
}

/// The request's URL with `page`/`per_page` replaced; parameters sorted by
/// name as Rails' `to_query` does.
fn page_href(ctx: &Ctx, page: u64, per_page: u64) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in ctx.params.iter() {
        if matches!(key.as_str(), "page" | "per_page" | "private_token") {
            continue;
        }
        flatten(key, value, &mut pairs);
    }
    pairs.push(("page".into(), page.to_string()));
    pairs.push(("per_page".into(), per_page.to_string()));
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        query.append_pair(k, v);
    }
    format!("{}{}?{}", ctx.base_url(), ctx.path, query.finish())
}

fn flatten(key: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::String(s) => out.push((key.to_string(), s.clone())),
        Value::Array(items) => {
            for item in items {
                flatten(&format!("{key}[]"), item, out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{key}[{k}]"), v, out);
            }
        }
        other => out.push((key.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(params: Value) -> Ctx {
        Ctx {
            params: Params::from_map(params.as_object().unwrap().clone()),
            pat: None,
            host: "h:1".into(),
            path: "/api/v4/runners/all".into(),
            peer_ip: None,
        }
    }

    #[test]
    fn pages() {
        let c = ctx(json!({"tag_list": ["b", "a"], "per_page": "100", "page": "2"}));
        let req = page_request(&c.params).unwrap();
        let (items, headers) = paginate((1..=250).collect::<Vec<u32>>(), req, &c);
        assert_eq!(items.first(), Some(&101));
        assert_eq!(items.len(), 100);
        let h = |n: &str| headers.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        assert_eq!(h("x-next-page"), "3");
        assert_eq!(h("x-prev-page"), "1");
        assert_eq!(h("x-total-pages"), "3");
        assert!(h("link").starts_with(
            "<http://h:1/api/v4/runners/all?page=1&per_page=100&tag_list%5B%5D=b&tag_list%5B%5D=a>; rel=\"prev\""
        ));
    }

    #[test]
    fn clamps() {
        let c = ctx(json!({"per_page": "1000", "page": "0"}));
        assert_eq!(
            page_request(&c.params).unwrap(),
            PageRequest {
                page: 1,
                per_page: 100
            }
        );
        let c = ctx(json!({"per_page": "x"}));
        assert!(page_request(&c.params).is_err());
    }

    #[test]
    fn empty_list_has_one_page() {
        let c = ctx(json!({}));
        let (items, headers) = paginate(Vec::<u8>::new(), page_request(&c.params).unwrap(), &c);
        assert!(items.is_empty());
        assert!(headers.contains(&("x-total-pages", "1".into())));
        assert!(headers.contains(&("x-next-page", String::new())));
    }
}
