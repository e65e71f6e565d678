#!/usr/bin/env python3
"""The app beside Palisade, played from outside Rust with the standard library only.

Usage: app_client.py BASE_URL SERVICE_CREDENTIAL ACCESS_TOKEN API_KEY

Verifies a customer's API key (with an action and a per-key limit), introspects the user's
access token (RFC 7662), checks the answer's shape, writes an audit event with a diff as
that user (twice, under one Idempotency-Key) and reads it back, revokes the token's session
(RFC 7009) and introspects again. The server runs the work-order manifest. Prints one line per step; exits non-zero
on the first answer that is not what an RFC-following client expects.
"""

import json
import sys
import urllib.parse
import urllib.request


def post_form(base, path, credential, fields):
    request = urllib.request.Request(
        base + path,
        data=urllib.parse.urlencode(fields).encode("ascii"),
        headers={
            "Authorization": "Bearer " + credential,
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers, response.read()


def fail(message):
    print("FAIL " + message)
    sys.exit(1)


def introspect(base, credential, token):
    status, headers, body = post_form(base, "/oauth/introspect", credential, {"token": token})
    if status != 200:
        fail("introspection answered %d" % status)
    if headers.get("Content-Type", "").split(";")[0] != "application/json":
        fail("introspection is not JSON: %s" % headers.get("Content-Type"))
    if headers.get("Cache-Control") != "no-store":
        fail("introspection may be cached")
    return json.loads(body)


def post_json(base, path, credential, body, headers=None):
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode("utf-8"),
        headers={"Authorization": "Bearer " + credential, "Content-Type": "application/json",
                 **(headers or {})},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def get_json(base, path, credential):
    request = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + credential})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def record_event(base, credential, token):
    event = {
        "action": "workorder.update",
        "actor": {"access_token": token},
        "targets": [{"type": "workorder", "id": "wo_py"}],
        "changes": {"before": {"status": "open", "priority": 2},
                    "after": {"status": "closed", "priority": 2}},
        "context": {"ip": "198.51.100.23", "user_agent": "python-app/1.0", "request_id": "py-1"},
    }
    once = {"Idempotency-Key": "py-wo-closed"}
    status, first = post_json(base, "/api/v1/audit/events", credential, event, once)
    if status != 201 or not first["id"].startswith("evt_") or len(first["hash"]) != 64:
        fail("the event was not appended: %d %r" % (status, first))
    status, again = post_json(base, "/api/v1/audit/events", credential, event, once)
    if status != 200 or again != first:
        fail("a retry under the same key is not the same event: %d %r" % (status, again))
    status, page = get_json(base, "/api/v1/audit/events?action=workorder.update", token)
    listed = [e for e in page["events"] if e["id"] == first["id"]]
    if status != 200 or len(listed) != 1:
        fail("the event is not listed once: %r" % page)
    read = listed[0]
    if read["changes"] != {"status": {"before": "open", "after": "closed"}}:
        fail("the diff is not the fields that changed, as objects: %r" % read["changes"])
    if (read["ip"], read["user_agent"], read["request_id"]) != ("198.51.100.23", "python-app/1.0", "py-1"):
        fail("the forwarded context is not the event's: %r" % read)
    if read["actor_type"] != "user" or read["app"]["targets"] != event["targets"]:
        fail("the actor or the app's part is not as written: %r" % read)
    print("recorded %s once (seq %d) with its diff and read it back" % (first["id"], first["seq"]))


def verify_key(base, credential, key):
    body = {"key": key, "action": "members.read", "ratelimit": {"limit": 1, "window_seconds": 60}}
    status, first = post_json(base, "/api/v1/keys/verify", credential, body)
    if status != 200 or first.get("valid") is not True or first.get("code") != "valid":
        fail("a live key is not valid: %d %r" % (status, first))
    if not first["key"]["id"].startswith("key_") or not first["key"]["tenant_id"].startswith("ten_"):
        fail("unexpected key view: %r" % first)
    status, second = post_json(base, "/api/v1/keys/verify", credential, body)
    if status != 200 or second.get("code") != "rate_limited" or second["ratelimit"]["retry_after"] < 1:
        fail("the second use within the limit's minute is not rate_limited: %r" % second)
    status, unknown = post_json(base, "/api/v1/keys/verify", credential, {"key": key + "x"})
    if status != 200 or unknown != {"valid": False, "code": "not_found"}:
        fail("a wrong key says more than not_found: %r" % unknown)
    print("verified key %s: valid, then rate_limited; a wrong one not_found" % first["key"]["id"])


def main():
    base, credential, token, key = sys.argv[1:5]
    verify_key(base, credential, key)
    live = introspect(base, credential, token)
    if live.get("active") is not True:
        fail("a live token is inactive: %r" % live)
    for claim, kind in [("sub", str), ("tid", str), ("sid", str), ("exp", int), ("iat", int),
                        ("iss", str), ("token_type", str), ("role", str), ("amr", list)]:
        if not isinstance(live.get(claim), kind):
            fail("%s is not a %s: %r" % (claim, kind.__name__, live))
    if not live["sub"].startswith("usr_") or not live["tid"].startswith("ten_"):
        fail("unexpected subject or tenant: %r" % live)
    print("introspected active sub=%s tid=%s role=%s" % (live["sub"], live["tid"], live["role"]))
    record_event(base, credential, token)

    status, _, body = post_form(base, "/oauth/revoke", credential,
                                {"token": token, "token_type_hint": "access_token"})
    if status != 200 or body:
        fail("revocation answered %d with %r" % (status, body))
    print("revoked")

    ended = introspect(base, credential, token)
    if ended != {"active": False}:
        fail("a revoked token says more than inactive: %r" % ended)
    print("introspected inactive")


if __name__ == "__main__":
    main()
