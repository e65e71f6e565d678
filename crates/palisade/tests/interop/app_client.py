#!/usr/bin/env python3
"""The app beside Palisade, played from outside Rust with the standard library only.

Usage: app_client.py BASE_URL SERVICE_CREDENTIAL ACCESS_TOKEN API_KEY

Verifies a customer's API key (with an action and a per-key limit), introspects the user's
access token (RFC 7662), checks the answer's shape, revokes the token's session (RFC 7009)
and introspects again. Prints one line per step; exits non-zero
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


def post_json(base, path, credential, body):
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode("utf-8"),
        headers={"Authorization": "Bearer " + credential, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


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
