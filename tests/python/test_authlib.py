"""A real third-party OAuth client (Authlib) against a real iamgate process.

Starts `iamgate serve` on a free loopback port with a throwaway data directory, creates one
account per authentication method with `iamgate admin create-root-sa`, then lets Authlib obtain
tokens with client_secret_basic and PrivateKeyJWT and verifies them against the served JWKS.
"""

import json
import os
import subprocess
import urllib.request
import warnings

import pytest
from iamgate_process import BIN, serving
from authlib.integrations.requests_client import OAuth2Session

with warnings.catch_warnings():
    # authlib.jose is deprecated in favour of joserfc but is what Authlib 1.x itself uses.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.jose import JsonWebKey, jwt
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.integrations.base_client.errors import OAuthError



def run(args, data_dir):
    env = dict(os.environ, IAMGATE_DATA_DIR=str(data_dir))
    env.pop("IAMGATE_CONFIG", None)
    out = subprocess.run([BIN, *args], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout



@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("iamgate")
    data = tmp / "data"
    key_file = tmp / "client.pem"
    generated = json.loads(run(["keys", "generate", "--out", str(key_file)], data))
    pub_file = tmp / "client.pub.pem"
    pub_file.write_text(generated["publicKeyPem"])
    secret_sa = json.loads(run(["admin", "create-root-sa", "--name", "py-basic",
                                "--permission", "console.root.view"], data))
    jwt_sa = json.loads(run(["admin", "create-root-sa", "--name", "py-jwt",
                             "--permission", "console.root.user.bind",
                             "--auth-method", "private_key_jwt",
                             "--public-key", str(pub_file)], data))
    with serving(data) as base:
        yield {
            "base": base,
            "token_url": base + "/api/m2m/oauth/token",
            "secret_sa": secret_sa,
            "jwt_sa": jwt_sa,
            "private_key": key_file.read_text(),
        }


def verify(gateway, token):
    with urllib.request.urlopen(gateway["base"] + "/.well-known/jwks.json", timeout=5) as r:
        jwks = JsonWebKey.import_key_set(json.load(r))
    claims = jwt.decode(token, jwks, claims_options={
        "iss": {"essential": True, "value": gateway["base"]},
        "aud": {"essential": True, "value": gateway["base"]},
        "exp": {"essential": True},
    })
    claims.validate()
    header = claims.header
    assert header["alg"] == "RS256"
    assert header["typ"] == "at+jwt"
    return claims


def test_client_secret_basic(gateway):
    sa = gateway["secret_sa"]
    with OAuth2Session(sa["clientId"], sa["clientSecret"],
                       token_endpoint_auth_method="client_secret_basic") as s:
        tok = s.fetch_token(gateway["token_url"], grant_type="client_credentials")
    assert tok["token_type"].lower() == "bearer"
    assert tok["expires_in"] == 3600
    assert "refresh_token" not in tok
    claims = verify(gateway, tok["access_token"])
    assert claims["sub"] == sa["clientId"]
    assert claims["client_id"] == sa["clientId"]
    assert claims["permissions"] == ["console.root.view"]


def test_client_secret_basic_wrong_secret_is_invalid_client(gateway):
    sa = gateway["secret_sa"]
    with OAuth2Session(sa["clientId"], "not-the-secret",
                       token_endpoint_auth_method="client_secret_basic") as s:
        with pytest.raises(OAuthError) as e:
            s.fetch_token(gateway["token_url"], grant_type="client_credentials")
    assert e.value.error == "invalid_client"


def test_private_key_jwt(gateway):
    sa = gateway["jwt_sa"]
    auth = PrivateKeyJWT(gateway["token_url"], headers={"kid": sa["kid"]})
    with OAuth2Session(sa["clientId"], gateway["private_key"],
                       token_endpoint_auth_method=auth) as s:
        tok = s.fetch_token(gateway["token_url"], grant_type="client_credentials")
    claims = verify(gateway, tok["access_token"])
    assert claims["sub"] == sa["clientId"]
    assert claims["permissions"] == ["console.root.user.bind"]


def test_private_key_jwt_without_kid_uses_the_only_key(gateway):
    sa = gateway["jwt_sa"]
    with OAuth2Session(sa["clientId"], gateway["private_key"],
                       token_endpoint_auth_method=PrivateKeyJWT(gateway["token_url"])) as s:
        tok = s.fetch_token(gateway["token_url"], grant_type="client_credentials")
    verify(gateway, tok["access_token"])
