//! Claim OPS-7: a running instance checked against every claim of the specification.
//! Two vantage points make one report: `inside` (the instance's own configuration, keys,
//! database and chains, served to the operator at `GET /api/v1/posture`) and `outside`
//! (what a client sees: headers, TLS, the published keys, input refused; `palisade
//! posture --url`). Each claim is `pass`, `fail` or `not_checkable` here, with evidence.
//! What only the test suite can show (a property of the code, not of an instance) is
//! `not_checkable`, and says so; so is what this version does not provide.

pub mod inside;
pub mod outside;
pub mod routes;

use serde::{Deserialize, Serialize};

/// Every claim of the specification, in its order. A test keeps it equal to the claims
/// docs/claims.md accounts for.
pub const CLAIMS: [&str; 68] = [
    "ID-1", "ID-2", "ID-3", "ID-4", "ID-5", "ID-6", "ID-7", "ID-8", "ID-9", "ID-10", "ID-11",
    "ID-12", "ID-13", "TEN-1", "TEN-2", "TEN-3", "TEN-4", "TEN-5", "TEN-6", "RBAC-1", "RBAC-2",
    "RBAC-3", "RBAC-4", "RBAC-5", "RBAC-6", "KEY-1", "KEY-2", "KEY-3", "KEY-4", "KEY-5", "APP-1",
    "APP-2", "APP-3", "APP-4", "APP-5", "APP-6", "APP-7", "APP-8", "AUD-1", "AUD-2", "AUD-3",
    "AUD-4", "AUD-5", "AUD-6", "HOOK-1", "HOOK-2", "HOOK-3", "HOOK-4", "HOOK-5", "SEC-1", "SEC-2",
    "SEC-3", "SEC-4", "WEB-1", "WEB-2", "WEB-3", "WEB-4", "WEB-5", "WEB-6", "OPS-1", "OPS-2",
    "OPS-3", "OPS-4", "OPS-5", "OPS-6", "OPS-7", "PROV-1", "PROV-2",
];

/// The claims this version does not provide yet (docs/claims.md).
const NOT_PROVIDED: [&str; 4] = ["TEN-5", "SEC-4", "PROV-1", "PROV-2"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    NotCheckable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotCheckable => "not_checkable",
        }
    }

    /// Which of two verdicts on one claim stands: a failure anywhere, else a pass.
    fn worst(self, other: Status) -> Status {
        match (self, other) {
            (Status::Fail, _) | (_, Status::Fail) => Status::Fail,
            (Status::Pass, _) | (_, Status::Pass) => Status::Pass,
            _ => Status::NotCheckable,
        }
    }
}

/// One claim's verdict and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    pub id: String,
    pub status: Status,
    pub evidence: String,
}

impl Finding {
    pub fn new(id: &str, status: Status, evidence: impl Into<String>) -> Self {
        Self {
            id: id.to_owned(),
            status,
            evidence: evidence.into(),
        }
    }

    pub fn pass(id: &str, evidence: impl Into<String>) -> Self {
        Self::new(id, Status::Pass, evidence)
    }

    pub fn fail(id: &str, evidence: impl Into<String>) -> Self {
        Self::new(id, Status::Fail, evidence)
    }

    /// Pass or fail as `holds` says, with the evidence either way.
    pub fn check(id: &str, holds: bool, evidence: impl Into<String>) -> Self {
        let status = if holds { Status::Pass } else { Status::Fail };
        Self::new(id, status, evidence)
    }
}

/// Every claim, once, in the specification's order.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// What was checked: `this instance`, or the URL.
    pub checked: String,
    /// RFC 3339.
    pub checked_at: String,
    pub passed: usize,
    pub failed: usize,
    pub not_checkable: usize,
    pub claims: Vec<Finding>,
}

impl Report {
    /// The report of `findings` (any number per claim; a failure wins, then a pass), every
    /// claim without one named for what it is.
    pub fn of(checked: &str, checked_at: String, findings: Vec<Finding>) -> Self {
        let claims: Vec<Finding> = CLAIMS
            .iter()
            .map(|id| {
                let mine: Vec<&Finding> = findings.iter().filter(|f| f.id == *id).collect();
                if mine.is_empty() {
                    let why = if NOT_PROVIDED.contains(id) {
                        "this version does not provide it (docs/claims.md)"
                    } else {
                        "a property of the code, proven by the test suite (docs/claims.md); not observable here"
                    };
                    return Finding::new(id, Status::NotCheckable, why);
                }
                let status = mine
                    .iter()
                    .fold(Status::NotCheckable, |s, f| s.worst(f.status));
                let evidence: Vec<&str> = mine.iter().map(|f| f.evidence.as_str()).collect();
                Finding::new(id, status, evidence.join("; "))
            })
            .collect();
        let count = |status| claims.iter().filter(|f| f.status == status).count();
        Self {
            checked: checked.to_owned(),
            checked_at,
            passed: count(Status::Pass),
            failed: count(Status::Fail),
            not_checkable: count(Status::NotCheckable),
            claims,
        }
    }

    /// This report and another of the same instance from elsewhere, claim by claim.
    pub fn merged_with(self, other: Report) -> Self {
        let mut findings = self.claims;
        findings.extend(
            other
                .claims
                .into_iter()
                .filter(|f| f.status != Status::NotCheckable),
        );
        // A claim one side checked drops the other side's "not observable here".
        let checked: std::collections::HashSet<String> = findings
            .iter()
            .filter(|f| f.status != Status::NotCheckable)
            .map(|f| f.id.clone())
            .collect();
        findings.retain(|f| f.status != Status::NotCheckable || !checked.contains(&f.id));
        Self::of(&self.checked, self.checked_at, findings)
    }

    /// One line per claim: the operator's view.
    pub fn text(&self) -> String {
        let mut out = format!(
            "posture of {} at {}: {} pass, {} fail, {} not checkable\n",
            self.checked, self.checked_at, self.passed, self.failed, self.not_checkable
        );
        for finding in &self.claims {
            out.push_str(&format!(
                "{:<7} {:<13} {}\n",
                finding.id,
                finding.status.as_str(),
                finding.evidence
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_list_is_the_one_docs_claims_md_accounts_for() {
        let doc = include_str!("../../../../docs/claims.md");
        let mut documented: Vec<&str> = doc
            .lines()
            .filter_map(|line| line.strip_prefix("| "))
            .filter_map(|rest| rest.split(' ').next())
            .filter(|id| id.contains('-') && id.chars().next().is_some_and(char::is_uppercase))
            .collect();
        documented.extend(NOT_PROVIDED);
        documented.sort();
        let mut listed = CLAIMS.to_vec();
        listed.sort();
        assert_eq!(listed, documented);
    }

    #[test]
    fn a_failure_anywhere_stands_and_every_claim_is_reported_once() {
        let report = Report::of(
            "x",
            "t".into(),
            vec![
                Finding::pass("WEB-2", "inside"),
                Finding::fail("WEB-2", "outside: no CSP on /"),
                Finding::pass("ID-1", "argon2id"),
            ],
        );
        assert_eq!(report.claims.len(), CLAIMS.len());
        let web2 = report.claims.iter().find(|f| f.id == "WEB-2").unwrap();
        assert_eq!(web2.status, Status::Fail);
        assert!(web2.evidence.contains("no CSP"), "{}", web2.evidence);
        assert_eq!((report.passed, report.failed), (1, 1));
        let merged = report.merged_with(Report::of(
            "y",
            "t".into(),
            vec![Finding::pass("ID-8", "jwks")],
        ));
        assert_eq!((merged.passed, merged.failed), (2, 1));
    }
}
