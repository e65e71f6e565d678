//! Vendor isolation (claim RBAC-5): the app writes what its users are to its resources, and
//! an external member acts only on the resources assigned to it — in every decision and
//! every resource search, in its own tenant only, never on Palisade's administration.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::access::{
    denied, evaluate, post_with, post_with_method, service_credential, user_subject, ALLOWED,
};
use crate::helpers::{Session, TestApp};
use crate::manifest::{about, assign_app_role, with_workorders};
use crate::sessions::add_membership;
use crate::tenancy::{login_to, send, user_id_of};

/// A member of `tenant` holding the app role `role`, signed in there.
async fn member_as(app: &TestApp, owner: &Session, email: &str, role: &str) -> (String, Session) {
    app.sign_up(email).await;
    add_membership(app, email, &owner.tenant, "viewer").await;
    let session = login_to(app, email, &owner.tenant).await;
    let id = user_id_of(app, &session).await;
    let (status, body) = assign_app_role(app, &owner.access, &id, json!(role)).await;
    assert_eq!(status, 204, "{body}");
    (id, session)
}

fn assignment(tenant: &str, workorders: &[String], user: &str) -> Value {
    json!({
        "tenant_id": tenant,
        "relations": workorders.iter().map(|id| json!({
            "resource": {"type": "workorder", "id": id},
            "relation": "assignee",
            "subject": {"type": "user", "id": user},
        })).collect::<Vec<_>>(),
    })
}

/// Writes (`PUT`) or removes (`DELETE`) relations; the status and the answer.
async fn relations(app: &TestApp, service: &str, method: Method, body: &Value) -> (u16, Value) {
    post_with_method(app, method, "/access/v1/relations", service, body).await
}

/// One page of a resource search for `action`.
async fn search(app: &TestApp, service: &str, subject: &Value, action: &str, page: Value) -> Value {
    let body = json!({
        "subject": subject,
        "action": {"name": action},
        "resource": {"type": "workorder"},
        "page": page,
    });
    let (status, answer) = post_with(app, "/access/v1/search/resource", service, &body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

fn ids(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

// claim: RBAC-5, APP-3
#[tokio::test]
async fn a_vendor_acts_only_on_the_work_orders_assigned_to_it() {
    let app = with_workorders().await;
    let owner = app.signed_in("owner@example.com").await;
    let (_, service) = service_credential(&app).await;
    let (vendor_id, vendor) = member_as(&app, &owner, "vendor@example.com", "vendor").await;
    let (tech_id, tech) = member_as(&app, &owner, "tech@example.com", "technician").await;
    let wo = |n: u32| format!("wo_{n}");
    let (status, written) = relations(
        &app,
        &service,
        Method::PUT,
        &assignment(&owner.tenant, &[wo(1)], &vendor_id),
    )
    .await;
    assert_eq!(status, 200, "{written}");
    let revision = written["revision"].as_str().unwrap().to_owned();
    assert_eq!(revision, "rev_1");

    let subject = user_subject(&vendor_id, &vendor);
    let ask = |action: &str, id: &str| {
        let mut q = about(subject.clone(), action, "workorder", &owner.tenant);
        q["resource"]["id"] = json!(id);
        q
    };
    assert_eq!(
        evaluate(&app, &service, &ask("workorder.update", "wo_1")).await,
        ALLOWED
    );
    assert_eq!(
        evaluate(&app, &service, &ask("workorder.update", "wo_2")).await,
        denied("not_assigned")
    );
    assert_eq!(
        evaluate(&app, &service, &ask("workorder.delete", "wo_1")).await,
        denied("role"),
        "an assignment gives no action the role lacks"
    );
    // Fresh at least as the write: a revision this tenant never reached is not.
    let mut fresh = ask("workorder.update", "wo_1");
    fresh["context"] = json!({"at_least_as_fresh": revision});
    assert_eq!(evaluate(&app, &service, &fresh).await, ALLOWED);
    fresh["context"] = json!({"at_least_as_fresh": "rev_999"});
    assert_eq!(
        evaluate(&app, &service, &fresh).await,
        denied("unknown_revision")
    );
    fresh["context"] = json!({"at_least_as_fresh": "yesterday"});
    let (status, _) = post_with(&app, "/access/v1/evaluation", &service, &fresh).await;
    assert_eq!(status, 422);
    // An internal member is not limited to assignments.
    let tech_subject = user_subject(&tech_id, &tech);
    let mut internal = about(
        tech_subject.clone(),
        "workorder.update",
        "workorder",
        &owner.tenant,
    );
    internal["resource"]["id"] = json!("wo_2");
    assert_eq!(evaluate(&app, &service, &internal).await, ALLOWED);

    // The search: exactly the assigned ones for the vendor.
    let found = search(&app, &service, &subject, "workorder.read", json!({})).await;
    assert_eq!(
        (ids(&found), &found["context"]["unrestricted"]),
        (vec![wo(1)], &json!(false))
    );
    let none = search(&app, &service, &subject, "workorder.delete", json!({})).await;
    assert_eq!(
        (ids(&none).len(), &none["context"]["reason"]),
        (0, &json!("role"))
    );
    let internal = search(&app, &service, &tech_subject, "workorder.read", json!({})).await;
    assert_eq!(internal["context"]["unrestricted"], true);

    // Nothing of Palisade's administration, nor the member list or other vendors.
    for path in [
        "/api/v1/members",
        "/api/v1/api-keys",
        "/api/v1/audit/events",
        "/api/v1/custom-roles",
        "/api/v1/invitations",
    ] {
        assert_eq!(
            app.get_as(path, &vendor.access).await.status(),
            403,
            "{path}"
        );
    }
    assert_eq!(
        crate::access::effective_actions(&app, &vendor).await,
        ["tenant.read", "workorder.read", "workorder.update"]
    );

    // Taken away, the next decision denies.
    let (status, _) = relations(
        &app,
        &service,
        Method::DELETE,
        &assignment(&owner.tenant, &[wo(1)], &vendor_id),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        evaluate(&app, &service, &ask("workorder.update", "wo_1")).await,
        denied("not_assigned")
    );
    let events: Vec<String> = app
        .inspect(
            "SELECT action || ' by ' || actor_type FROM audit_events
             WHERE action LIKE 'relations.%' ORDER BY seq",
            None,
        )
        .await;
    assert_eq!(
        events,
        [
            "relations.written by service",
            "relations.deleted by service"
        ]
    );
}

// claim: RBAC-5, TEN-1, TEN-4
#[tokio::test]
async fn relations_stay_in_their_tenant_and_refuse_outsiders_and_bad_input() {
    let app = with_workorders().await;
    let a = app.signed_in("a@example.com").await;
    let b = app.signed_in("b@example.com").await;
    let (_, service) = service_credential(&app).await;
    let (vendor_id, vendor) = member_as(&app, &a, "vendor@example.com", "vendor").await;
    // The same person is a member of B too, and assigned wo_1 there only.
    add_membership(&app, "vendor@example.com", &b.tenant, "viewer").await;
    let (status, _) = relations(
        &app,
        &service,
        Method::PUT,
        &assignment(&b.tenant, &["wo_1".into()], &vendor_id),
    )
    .await;
    assert_eq!(status, 200);
    let subject = user_subject(&vendor_id, &vendor);
    assert_eq!(
        evaluate(
            &app,
            &service,
            &about(subject.clone(), "workorder.read", "workorder", &a.tenant)
        )
        .await,
        denied("not_assigned"),
        "B's assignment is not seen in A"
    );
    assert_eq!(
        evaluate(
            &app,
            &service,
            &about(subject.clone(), "workorder.read", "workorder", &b.tenant)
        )
        .await,
        denied("not_a_member"),
        "A's token decides nothing in B"
    );
    assert!(ids(&search(&app, &service, &subject, "workorder.read", json!({})).await).is_empty());

    let outsider = user_id_of(&app, &app.signed_in("outsider@example.com").await).await;
    let before = app.table_counts().await;
    let mut unknown_relation = assignment(&a.tenant, &["wo_1".into()], &vendor_id);
    unknown_relation["relations"][0]["relation"] = json!("owner");
    let mut unknown_type = assignment(&a.tenant, &["wo_1".into()], &vendor_id);
    unknown_type["relations"][0]["resource"]["type"] = json!("spaceship");
    let mut blank_id = assignment(&a.tenant, &["wo_1".into()], &vendor_id);
    blank_id["relations"][0]["resource"]["id"] = json!("");
    let many: Vec<String> = (0..101).map(|n| format!("wo_{n}")).collect();
    for (body, why) in [
        (
            assignment(&a.tenant, &["wo_1".into(), "wo_2".into()], &outsider),
            "a user outside the tenant",
        ),
        (unknown_relation, "a relation the manifest does not declare"),
        (unknown_type, "an undeclared resource type"),
        (blank_id, "an empty id"),
        (assignment(&a.tenant, &many, &vendor_id), "over 100"),
        (assignment(&a.tenant, &[], &vendor_id), "none"),
    ] {
        let (status, answer) = relations(&app, &service, Method::PUT, &body).await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (422, &json!("invalid_field")),
            "{why}: {answer}"
        );
    }
    let nowhere = "ten_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0";
    for method in [Method::PUT, Method::DELETE] {
        let body = assignment(nowhere, &["wo_1".into()], &vendor_id);
        let (status, answer) = relations(&app, &service, method.clone(), &body).await;
        assert_eq!(
            status, 422,
            "{method} for a tenant that does not exist: {answer}"
        );
    }
    assert_eq!(app.table_counts().await, before, "nothing half-written");
    // Only a service credential writes relations.
    let (status, _) = relations(
        &app,
        &a.access,
        Method::PUT,
        &assignment(&a.tenant, &["wo_1".into()], &vendor_id),
    )
    .await;
    assert_eq!(status, 401);
}

// claim: RBAC-5, APP-3
#[tokio::test]
async fn the_search_pages_through_ten_thousand_assignments_without_losing_or_repeating_one() {
    let app = with_workorders().await;
    let owner = app.signed_in("owner@example.com").await;
    let (_, service) = service_credential(&app).await;
    let (vendor_id, vendor) = member_as(&app, &owner, "vendor@example.com", "vendor").await;
    let all: Vec<String> = (0..10_000).map(|n| format!("wo_{n:05}")).collect();
    for batch in all.chunks(100) {
        let (status, answer) = relations(
            &app,
            &service,
            Method::PUT,
            &assignment(&owner.tenant, batch, &vendor_id),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    let subject = user_subject(&vendor_id, &vendor);
    let mut seen = Vec::new();
    let mut page = json!({"limit": 1000});
    loop {
        let answer = search(&app, &service, &subject, "workorder.read", page.clone()).await;
        let found = ids(&answer);
        assert!(found.len() <= 1000);
        seen.extend(found);
        let next = answer["page"]["next_token"].as_str().unwrap();
        if next.is_empty() {
            break;
        }
        page = json!({"limit": 1000, "token": next});
    }
    assert_eq!(seen.len(), 10_000, "none lost");
    assert_eq!(
        seen.iter().collect::<BTreeSet<_>>().len(),
        10_000,
        "none repeated"
    );
    assert_eq!(seen, all, "in id order");
    let (status, _) = post_with(
        &app,
        "/access/v1/search/resource",
        &service,
        &json!({"subject": subject, "action": {"name": "workorder.read"}, "resource": {"type": "workorder"}, "page": {"token": "!!"}}),
    )
    .await;
    assert_eq!(status, 422, "a token no page gave");
    // A removed member's assignments go with the membership.
    let (status, _) = send(
        &app,
        Method::DELETE,
        &format!("/api/v1/members/{vendor_id}"),
        &owner.access,
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(app.count_rows("relations").await, 0);
    let revisions: Vec<i64> = app
        .inspect("SELECT revision FROM relation_revisions", None)
        .await;
    assert_eq!(
        revisions,
        [101],
        "the removal moved the revision past the 100 writes"
    );
}
