// Verifies a Palisade access token with jose (an independent JOSE implementation), using
// only the published JWKS. Usage: node verify-jwt.mjs JWKS_URL ISSUER AUDIENCE TOKEN
// Prints the verified payload as JSON, or exits non-zero with the reason.
import { createRemoteJWKSet, jwtVerify } from "jose";

const [jwksUrl, issuer, audience, token] = process.argv.slice(2);
try {
  const jwks = createRemoteJWKSet(new URL(jwksUrl));
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer,
    audience,
    algorithms: ["EdDSA"],
  });
  console.log(JSON.stringify({ header: protectedHeader, payload }));
} catch (error) {
  console.error(`refused: ${error.code ?? error.name}: ${error.message}`);
  process.exit(1);
}
