-- wrk script: RFC 7662 introspection of $INTROSPECT_TOKEN by the client $CLIENT_ID /
-- $CLIENT_SECRET (in the body) at $INTROSPECT_PATH: gramkey's /oauth/introspect, or
-- oidc-provider's /token/introspection for the baseline.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "token=" .. os.getenv("INTROSPECT_TOKEN") .. "&client_id=" .. os.getenv("CLIENT_ID")
  .. "&client_secret=" .. os.getenv("CLIENT_SECRET")
wrk.path = os.getenv("INTROSPECT_PATH")
