-- wrk script: gramkey's RFC 7662 introspection (POST /oauth/introspect) of the seed's token
-- ($TOKEN), by the seed's client ($CLIENT_ID / $CLIENT_SECRET, in the body).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "token=" .. os.getenv("TOKEN") .. "&client_id=" .. os.getenv("CLIENT_ID")
  .. "&client_secret=" .. os.getenv("CLIENT_SECRET")
wrk.path = "/oauth/introspect"
