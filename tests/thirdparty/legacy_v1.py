#!/usr/bin/env python3
"""Drive gramkey with python-instagram 1.3.2 (facebookarchive/python-instagram, legacy v1),
unmodified: only its host, scheme and OAuth URLs are pointed at gramkey, the attributes the
library reads them from.

Protocol with the test: prints `AUTHORIZE <url>`, reads the redirect URL (after login and
consent) on stdin, and ends with `RESULT <json>`. Exits 1 on any failure.

Env:
  GRAMKEY_URL            https://127.0.0.1:PORT (HTTPLIB2_CA_CERTS must name its certificate)
  GRAMKEY_CLIENT_ID, GRAMKEY_CLIENT_SECRET, GRAMKEY_REDIRECT_URI
  GRAMKEY_PHASE          flow (default): authorize, exchange, profile, every media page, a
                         media, its comments;
                         signed: with GRAMKEY_TOKEN, the app now enforcing signed requests: the
                         same calls succeed, and with a wrong secret they are refused.
  GRAMKEY_EXPECT_MEDIA   how many media the user has (flow)
"""
import json
import os
import sys
from urllib.parse import parse_qs, urlsplit

from instagram import InstagramAPI
from instagram.bind import InstagramAPIError


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


def point_at_gramkey(api, base):
    u = urlsplit(base)
    api.protocol = u.scheme
    api.host = u.netloc
    api.authorize_url = f"{base}/oauth/authorize"
    api.access_token_url = f"{base}/oauth/access_token"
    return api


def flow(base, out):
    client_id = os.environ["GRAMKEY_CLIENT_ID"]
    secret = os.environ["GRAMKEY_CLIENT_SECRET"]
    redirect = os.environ["GRAMKEY_REDIRECT_URI"]
    oauth = point_at_gramkey(
        InstagramAPI(client_id=client_id, client_secret=secret, redirect_uri=redirect), base)
    print("AUTHORIZE " + oauth.get_authorize_url(scope=["basic", "public_content", "comments"]),
          flush=True)
    landed = sys.stdin.readline().strip()
    code = parse_qs(urlsplit(landed).query)["code"][0]
    token, user = oauth.exchange_code_for_access_token(code)
    check(token and user["username"], "exchange gave a token and the user")
    out["checks"].append("exchange")

    # With client_secret set, the library signs every call (sig, twice on GETs).
    api = point_at_gramkey(InstagramAPI(access_token=token, client_secret=secret), base)
    me = api.user()
    check(me.username == user["username"] and me.counts["media"] >= 1, "users/self.json")
    out["checks"].append("profile")

    expected = int(os.environ["GRAMKEY_EXPECT_MEDIA"])
    media, next_url = api.user_recent_media(count=2)
    pages = 1
    while next_url:
        more, next_url = api.user_recent_media(with_next_url=next_url)
        media.extend(more)
        pages += 1
    ids = [m.id for m in media]
    check(len(ids) == expected and len(set(ids)) == expected, f"{len(ids)} media of {expected}")
    times = [m.created_time for m in media]
    check(times == sorted(times, reverse=True), "newest first")
    out["media"] = {"count": len(ids), "pages": pages}
    out["checks"].append("media_walk")

    with_comments = [m for m in media if m.comment_count]
    check(with_comments, "some media has comments")
    one = api.media(with_comments[0].id)
    check(one.id == with_comments[0].id and one.images["standard_resolution"].url, "media/{id}")
    comments = api.media_comments(one.id)
    check(len(comments) == one.comment_count, "every comment")
    check(all(c.user.username and c.text for c in comments), "comments with from and text")
    out["checks"].append("media_and_comments")
    out["token"] = token
    out["media_id"] = one.id


def signed(base, out):
    token = os.environ["GRAMKEY_TOKEN"]
    media_id = os.environ["GRAMKEY_MEDIA_ID"]
    api = point_at_gramkey(
        InstagramAPI(access_token=token, client_secret=os.environ["GRAMKEY_CLIENT_SECRET"]), base)
    check(api.user().username, "signed users/self")
    check(api.media(media_id).id == media_id, "signed media/{id}")
    check(api.media_comments(media_id), "signed comments")
    out["checks"].append("signed")
    wrong = point_at_gramkey(InstagramAPI(access_token=token, client_secret="0" * 32), base)
    try:
        wrong.user()
        raise SystemExit("FAILED: a wrong signature was accepted")
    except InstagramAPIError as e:
        check(e.error_type == "OAuthForbiddenException", f"refusal type {e.error_type}")
    out["checks"].append("bad_signature_refused")


def main():
    base = os.environ["GRAMKEY_URL"].rstrip("/")
    out = {"library": "python-instagram", "checks": []}
    if os.environ.get("GRAMKEY_PHASE", "flow") == "flow":
        flow(base, out)
    else:
        signed(base, out)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
