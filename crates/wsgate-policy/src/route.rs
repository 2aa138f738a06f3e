//! Route selection: the longest route path that is a prefix of the request
//! path on a `/` boundary (`/chat` serves `/chat` and `/chat/room`, never
//! `/chatroom`).
//!
//! Paths compare case-sensitively, as RFC 3986 says they do; many upstreams
//! (IIS, ASP.NET, case-insensitive file systems) do not. So a request that
//! a more specific route would serve if case were ignored (`/ADMIN` beside
//! the routes `/` and `/admin`) has no route: the less specific route would
//! take it past the checks of the one the upstream will treat it as.
//! [`Router::find`] is the only way to a route, so no caller can skip that.

use std::sync::Arc;

use wsgate_config::Route;

use crate::Reason;

/// Routes, searched longest path first.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Arc<Route>>,
    /// Indexes into `routes`, longest path first.
    order: Vec<usize>,
}

impl Router {
    /// Builds a router over the config's routes.
    pub fn new(routes: Vec<Route>) -> Self {
        let mut order: Vec<usize> = (0..routes.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(routes[i].path.len()));
        let routes = routes.into_iter().map(Arc::new).collect();
        Router { routes, order }
    }

    /// The route for a request path (no query), with its index in the
    /// config; or why there is none.
    pub fn find(&self, path: &str) -> Result<(usize, &Arc<Route>), NoRoute<'_>> {
        let found = self
            .order
            .iter()
            .map(|&i| (i, &self.routes[i]))
            .find(|(_, r)| serves(&r.path, path));
        // Only routes longer than the one found can be more specific.
        let served = found.map_or(0, |(_, r)| r.path.len());
        let variant = self
            .order
            .iter()
            .map(|&i| &self.routes[i])
            .take_while(|r| r.path.len() > served)
            .find(|r| serves_ignoring_case(&r.path, path));
        match (found, variant) {
            (_, Some(route)) => Err(NoRoute::CaseVariant(route)),
            (Some(found), None) => Ok(found),
            (None, None) => Err(NoRoute::Unserved),
        }
    }

    /// All routes, in config order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

/// Why [`Router::find`] found no route.
#[derive(Debug, Clone, Copy)]
pub enum NoRoute<'a> {
    /// No route's path is a prefix of it.
    Unserved,
    /// This route would serve the path if letter case were ignored, and is
    /// more specific than any route that serves it as spelled.
    CaseVariant(&'a Arc<Route>),
}

impl NoRoute<'_> {
    /// The refusal of a request for `path`: 404 `route_not_found`, or for a
    /// case variant 400 `bad_handshake` (the request is malformed for this
    /// gateway, not aimed at nothing).
    pub fn refusal(&self, path: &str) -> (Reason, String) {
        match self {
            NoRoute::Unserved => (Reason::RouteNotFound, format!("no route serves {path:?}")),
            NoRoute::CaseVariant(route) => (
                Reason::BadHandshake,
                format!(
                    "{path:?} differs only in letter case from route {:?}: an upstream that ignores case would serve that route's resources past its checks",
                    route.path
                ),
            ),
        }
    }
}

fn serves(route: &str, path: &str) -> bool {
    route == "/"
        || path == route
        || path
            .strip_prefix(route)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn serves_ignoring_case(route: &str, path: &str) -> bool {
    path.get(..route.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(route))
        && path
            .get(route.len()..)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::{serves, serves_ignoring_case};

    #[test]
    fn prefixes_on_segment_boundaries() {
        assert!(serves("/chat", "/chat"));
        assert!(serves("/chat", "/chat/room"));
        assert!(!serves("/chat", "/chatroom"));
        assert!(!serves("/chat", "/"));
        assert!(serves("/", "/anything"));
    }

    #[test]
    fn case_variants_on_segment_boundaries() {
        assert!(serves_ignoring_case("/admin", "/ADMIN"));
        assert!(serves_ignoring_case("/admin", "/Admin/users"));
        assert!(!serves_ignoring_case("/admin", "/ADMINS"));
        assert!(!serves_ignoring_case("/admin", "/ADM"));
        // A multi-byte character where the route's path would end.
        assert!(!serves_ignoring_case("/ab", "/é"));
    }
}
