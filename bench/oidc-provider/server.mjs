// The baseline for gramkey's token benchmarks: oidc-provider with its default in-memory store,
// issuing opaque client_credentials access tokens and answering RFC 7662 introspection of them.
// Started by bench/run.sh.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 18183);
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: 'bench',
    client_secret: 'bench-secret-0123456789abcdef0123456789abcdef',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_post',
  }],
  features: { clientCredentials: { enabled: true }, introspection: { enabled: true } },
});
provider.listen(port, '127.0.0.1');
