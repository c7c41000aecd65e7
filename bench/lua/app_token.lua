-- wrk script: gramkey's client_credentials grant (an app token, committed durably with its
-- audit event), with the seed's client from $CLIENT_ID / $CLIENT_SECRET.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=client_credentials&client_id=" .. os.getenv("CLIENT_ID")
  .. "&client_secret=" .. os.getenv("CLIENT_SECRET")
wrk.path = "/oauth/access_token"
