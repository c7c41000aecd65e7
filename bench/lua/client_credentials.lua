-- wrk script: oidc-provider's client_credentials grant, the baseline for token issuance.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=client_credentials&client_id=bench&client_secret=bench-secret-0123456789abcdef0123456789abcdef"
wrk.path = "/token"
