//! `wsgate audit URL`: probes one WebSocket endpoint, wsgate or not, for the
//! weaknesses that let a hostile page or client in, and reports what it
//! found with how to fix it.
//!
//! - [`target`]: the operator's options, checked before any connection.
//! - [`wire`]: the auditor's own client, which sends what libraries refuse
//!   to (foreign origins, bad versions, malformed frames) and reads answers
//!   under a deadline and a size bound.
//! - [`checks`]: the catalog of checks and their runners; every loop is
//!   bounded and paced (`--rate`), and the stressing checks run only with
//!   `--aggressive`.
//! - [`report`]: findings as a table, JSON (versioned schema) and SARIF 2.1.0.
//!
//! It is for operators testing their own services: one URL, no crawling.

pub mod checks;
pub mod report;
pub mod target;
pub mod wire;

use checks::{CATALOG, Check, Ctx};
use report::{Entry, Outcome, Report};
use target::{Options, Target, Unusable};
use wire::WireError;

/// Runs the audit; `progress` is told of each check before it runs.
/// `Err` means the audit could not run at all (exit 2).
pub async fn audit(
    options: Options,
    progress: &mut (dyn FnMut(usize, usize, &Check) + Send),
) -> Result<Report, Unusable> {
    let chosen = choose(&options)?;
    let target = Target::new(options)?;
    baseline(&target).await?;
    let ctx = Ctx::new(target);
    let mut entries = Vec::new();
    let total = CATALOG.len();
    for (i, check) in CATALOG.iter().enumerate() {
        let outcome = if chosen.contains(&check.id) {
            progress(i + 1, total, check);
            ctx.run(check).await
        } else {
            Outcome::Skipped {
                reason: "not selected (--checks/--skip)".into(),
            }
        };
        entries.push(Entry { check, outcome });
    }
    let t = &ctx.target;
    Ok(Report {
        target: t.options.url.clone(),
        origin: t.origin.clone(),
        aggressive: t.options.aggressive,
        entries,
    })
}

/// The ids `--checks` and `--skip` leave; an unknown id is an error.
fn choose(options: &Options) -> Result<Vec<&'static str>, Unusable> {
    let unknown: Vec<&String> = options
        .checks
        .iter()
        .chain(&options.skip)
        .filter(|id| checks::catalog::find(id).is_none())
        .collect();
    if !unknown.is_empty() {
        let list: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
        return Err(Unusable(format!(
            "unknown check id(s): {}; `wsgate audit --list` shows them",
            list.join(", ")
        )));
    }
    Ok(CATALOG
        .iter()
        .map(|c| c.id)
        .filter(|id| options.checks.is_empty() || options.checks.iter().any(|c| c == id))
        .filter(|id| !options.skip.iter().any(|s| s == id))
        .collect())
}

/// The legitimate handshake must succeed, or nothing else means anything.
async fn baseline(target: &Target) -> Result<(), Unusable> {
    let mut conn = target.dialer.connect().await.map_err(|e| match e {
        WireError::Tls(..) if !target.options.insecure => Unusable(format!(
            "{e}; if this is your own endpoint with a certificate that does not verify, add --insecure (the certificate is then reported)"
        )),
        other => Unusable(format!("cannot reach {}: {other}", target.options.url)),
    })?;
    let response = conn.handshake(&target.request()).await.map_err(|e| {
        Unusable(format!(
            "{}: the legitimate handshake failed: {e}",
            target.options.url
        ))
    })?;
    if response.status != 101 {
        return Err(Unusable(format!(
            "{}: the legitimate handshake (Origin {}) was answered {}; give the origin the application's pages have (--origin) and the credentials a logged-in browser holds (--cookie, --bearer, --header, --client-cert)",
            target.options.url, target.origin, response.status_line
        )));
    }
    conn.close().await;
    Ok(())
}
