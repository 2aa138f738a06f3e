//! Route selection: the longest route path that is a prefix of the request
//! path on a `/` boundary (`/chat` serves `/chat` and `/chat/room`, never
//! `/chatroom`).

use std::sync::Arc;

use wsgate_config::Route;

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

    /// The route for a request path (no query), with its index in the config.
    pub fn find(&self, path: &str) -> Option<(usize, &Arc<Route>)> {
        self.order
            .iter()
            .map(|&i| (i, &self.routes[i]))
            .find(|(_, r)| serves(&r.path, path))
    }

    /// All routes, in config order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

fn serves(route: &str, path: &str) -> bool {
    route == "/"
        || path == route
        || path
            .strip_prefix(route)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::serves;

    #[test]
    fn prefixes_on_segment_boundaries() {
        assert!(serves("/chat", "/chat"));
        assert!(serves("/chat", "/chat/room"));
        assert!(!serves("/chat", "/chatroom"));
        assert!(!serves("/chat", "/"));
        assert!(serves("/", "/anything"));
    }
}
