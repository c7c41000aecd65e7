//! The sandbox's test tools over Graph, with the app's own app token (docs/test-tools.md):
//! `/{app-id}/test_clock`, `/{app-id}/test_faults` and `/{app-id}/test_log`. A live app is
//! refused each of them.

use gramkey_domain::error::GraphError;
use gramkey_domain::sandbox;
use serde_json::{Value, json};

use crate::origin::Origin;
use crate::state::AppState;
use crate::test_tools;
use crate::tokens::Bearer;
use crate::wire::graph::GraphResponse;

/// The calls a `test_log` page holds at most.
const LOG_PAGE: usize = 500;

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Whether `edge` is one of the tools.
pub fn is_tool(edge: &str) -> bool {
    matches!(edge, "test_clock" | "test_faults" | "test_log")
}

/// `GET`, `POST` and `DELETE` on a tool of the caller's own app.
pub async fn app_tool(
    state: &AppState,
    origin: &Origin,
    caller: &Bearer,
    (node, edge, method): (&str, &str, &str),
    params: &[(String, String)],
) -> Result<Value, GraphResponse> {
    let unsupported = || GraphError::not_found(node, &method.to_ascii_lowercase());
    if node != caller.app_id().as_str() {
        return Err(unsupported().into());
    }
    let app = &state
        .ops
        .store
        .app(caller.app_id())
        .await?
        .ok_or_else(GraphError::invalid_token)?;
    sandbox::tools_allowed(app.mode)?;
    match (edge, method) {
        ("test_clock", "GET") => Ok(test_tools::clock_view(state, app)),
        ("test_clock", "POST") => {
            let by = param(params, "advance")
                .ok_or_else(|| {
                    GraphError::invalid_parameter(
                        "The parameter advance is required: seconds to move the app's clock forward",
                    )
                })?
                .trim()
                .parse::<i64>()
                .map_err(|_| {
                    GraphError::invalid_parameter("advance must be a whole number of seconds")
                })?;
            let app = test_tools::advance_clock(state, origin, app, by).await?;
            Ok(test_tools::clock_view(state, &app))
        }
        ("test_clock", "DELETE") => {
            let app = test_tools::reset_clock(state, origin, app).await?;
            Ok(test_tools::clock_view(state, &app))
        }
        ("test_faults", "GET") => {
            let now = state.ops.now_for(app);
            let rules = state.ops.store.faults(&app.id).await?;
            let data: Vec<Value> = rules
                .iter()
                .filter(|r| r.active(now))
                .map(|r| test_tools::rule_view(r, now))
                .collect();
            Ok(json!({ "data": data }))
        }
        ("test_faults", "POST") => {
            let rule = test_tools::add_fault(state, origin, app, params).await?;
            Ok(test_tools::rule_view(&rule, state.ops.now_for(app)))
        }
        ("test_faults", "DELETE") => {
            let n = test_tools::clear_faults(state, origin, app).await?;
            Ok(json!({ "success": true, "deleted": n }))
        }
        ("test_log", "GET") => {
            let number = |name: &str| {
                param(params, name)
                    .map(|v| {
                        v.trim().parse::<u64>().map_err(|_| {
                            GraphError::invalid_parameter(format!("{name} must be a whole number"))
                        })
                    })
                    .transpose()
            };
            let since = number("since")?.unwrap_or(0);
            let limit = number("limit")?.map_or(100, |l| usize::try_from(l).unwrap_or(LOG_PAGE));
            let calls = state.calls.since(&app.id, since, limit.clamp(1, LOG_PAGE));
            let next = calls.last().map_or(since, |c| c.seq);
            Ok(json!({
                "data": calls,
                "node": state.calls.node(),
                "next_since": next,
            }))
        }
        _ => Err(unsupported().into()),
    }
}
