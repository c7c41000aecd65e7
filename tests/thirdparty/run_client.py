#!/usr/bin/env python3
"""Drive gramkey with an unmodified third-party client: python-facebook-api (pyfacebook) 0.24.0.

Env:
  GRAMKEY_URL            base, e.g. http://127.0.0.1:8080 (required)
  GRAMKEY_TOKEN          Instagram Login / Basic Display user access token (required)
  GRAMKEY_GRAPH_VERSION  e.g. v21.0; default: the library's newest (v24.0 in 0.24.0)
  GRAMKEY_PAGE_LIMIT     page size asked for on /me/media (default 2, to force paging)
  GRAMKEY_REFRESH        run   = refresh must succeed and the new token must work (default)
                         error = refresh must fail with a Graph error (e.g. token < 24 h old)
                         skip  = don't call refresh_access_token
  GRAMKEY_COUNT_CHECK    1 (default) = number of walked media must equal media_count; 0 = report only
Prints one JSON summary on stdout; exits 1 on any failure.
"""
import json
import os
import sys
import traceback
from urllib.parse import urlsplit

import pyfacebook
from pyfacebook import FacebookError, IGBasicDisplayApi

USER_FIELDS = ["id", "username", "account_type", "media_count"]
MEDIA_FIELDS = ["id", "caption", "media_type", "media_url", "timestamp"]
CHILD_FIELDS = ["id", "media_type", "media_url"]


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def make_api(base, token, version, calls):
    kw = dict(access_token=token, base_url=base, timeout=30)
    if version:
        kw["version"] = version
    api = IGBasicDisplayApi(**kw)

    # Record what went over the wire (path + parameter names, never the token), through
    # requests' own hook on the library's public `session` attribute.
    def hook(resp, *a, **k):
        u = urlsplit(resp.request.url)
        calls.append({"method": resp.request.method, "path": u.path, "status": resp.status_code})

    api.session.hooks["response"].append(hook)
    return api


def main():
    base = os.environ["GRAMKEY_URL"].rstrip("/") + "/"  # the library joins base_url + "v24.0/me" verbatim
    token = os.environ["GRAMKEY_TOKEN"]
    version = os.environ.get("GRAMKEY_GRAPH_VERSION") or None
    limit = int(os.environ.get("GRAMKEY_PAGE_LIMIT", "2"))
    refresh_mode = os.environ.get("GRAMKEY_REFRESH", "run")
    count_check = os.environ.get("GRAMKEY_COUNT_CHECK", "1") == "1"

    calls = []
    api = make_api(base, token, version, calls)
    out = {"library": "python-facebook-api", "library_version": pyfacebook.__version__,
           "graph_version": api.version, "checks": []}

    # 1. Profile: GET {base}{ver}/me?fields=id,username,account_type,media_count&access_token=…
    user = api.user.get_info(fields=USER_FIELDS)
    check(user is not None and user.id and user.username, "profile lacks id/username")
    check(user.account_type is not None and user.media_count is not None, "profile lacks account_type/media_count")
    out["profile"] = user.to_dict()
    out["checks"].append("profile")

    # 2. All of /me/media: the library follows paging.next (its query string) until there is none.
    n_before = len(calls)
    media = api.user.get_media(fields=MEDIA_FIELDS, count=None, limit=limit)
    items = media.data or []
    pages = len(calls) - n_before
    ids = [m.id for m in items]
    check(all(ids), "a media item has no id")
    check(len(ids) == len(set(ids)), f"duplicate media ids across pages: {ids}")
    for m in items:
        check(m.media_type in ("IMAGE", "VIDEO", "CAROUSEL_ALBUM"), f"bad media_type {m.media_type!r}")
        check(m.timestamp, f"media {m.id} has no timestamp")
    expected_pages = max(1, -(-user.media_count // limit)) if user.media_count else 1
    out["media"] = {"count": len(items), "pages": pages, "page_limit": limit, "ids": ids}
    if count_check:
        check(len(items) == user.media_count, f"walked {len(items)} media, profile says {user.media_count}")
        check(pages == expected_pages, f"{pages} page requests, expected {expected_pages}")
    out["checks"].append("media_walk")

    # 3. One media by id, and its children if it is an album.
    if items:
        first = items[0]
        one = api.media.get_info(media_id=first.id, fields=MEDIA_FIELDS)
        check(one.id == first.id, f"GET /{first.id} answered id {one.id}")
        check(one.media_type == first.media_type, "media_type differs between list and object")
        out["one_media"] = one.to_dict()
        out["checks"].append("media_by_id")
        album = next((m for m in items if m.media_type == "CAROUSEL_ALBUM"), None)
        if album:
            kids = api.media.get_children(media_id=album.id, fields=CHILD_FIELDS)
            check(kids is not None and kids.data, f"album {album.id} has no children")
            check(all(k.id and k.media_type for k in kids.data), "child lacks id/media_type")
            out["children"] = {"album": album.id, "ids": [k.id for k in kids.data]}
            out["checks"].append("children")

    # 4. A bad token must surface as the library's FacebookError carrying Graph's error object.
    bad = make_api(base, token + "x", version, calls)
    try:
        bad.user.get_info(fields=USER_FIELDS)
        raise Fail("a bad token was accepted")
    except FacebookError as e:
        check(getattr(e, "code", None) == 190, f"bad token: expected code 190, got {e!r}")
        check(getattr(e, "type", None) == "OAuthException", f"bad token: expected OAuthException, got {e!r}")
        out["bad_token_error"] = {"code": e.code, "type": e.type, "message": e.message}
    out["checks"].append("error_shape")

    # 5. Refresh: GET {base}refresh_access_token?grant_type=ig_refresh_token&access_token=… (no version).
    if refresh_mode == "run":
        r = api.refresh_access_token(access_token=token)
        check(isinstance(r.get("access_token"), str) and r["access_token"], "refresh: no access_token")
        check(r.get("token_type") == "bearer", f"refresh: token_type {r.get('token_type')!r}")
        check(isinstance(r.get("expires_in"), int) and r["expires_in"] > 0, "refresh: bad expires_in")
        api2 = make_api(base, r["access_token"], version, calls)
        again = api2.user.get_info(fields=["id", "username"])
        check(again.id == user.id, "refreshed token belongs to another user")
        out["refresh"] = {"token_type": r["token_type"], "expires_in": r["expires_in"], "new_token_works": True}
        out["checks"].append("refresh")
    elif refresh_mode == "error":
        try:
            api.refresh_access_token(access_token=token)
            raise Fail("refresh was expected to fail but succeeded")
        except FacebookError as e:
            out["refresh"] = {"error": {"code": e.code, "type": getattr(e, "type", None), "message": e.message}}
        out["checks"].append("refresh_refused")

    out["requests"] = calls
    out["ok"] = True
    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - any failure is a failed run
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}, indent=2))
        traceback.print_exc(file=sys.stderr)
        sys.exit(1)
