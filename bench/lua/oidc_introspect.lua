-- wrk script: oidc-provider's RFC 7662 introspection of one of its client_credentials tokens
-- ($OIDC_TOKEN), the baseline for gramkey's introspection.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "token=" .. os.getenv("OIDC_TOKEN")
  .. "&client_id=bench&client_secret=bench-secret-0123456789abcdef0123456789abcdef"
wrk.path = "/token/introspection"
