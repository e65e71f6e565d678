// Verifies Palisade's webhook deliveries with the Standard Webhooks reference library
// (npm `standardwebhooks`), not Palisade's own signing code. Usage:
//   node verify-webhooks.mjs FILE   where FILE is {"secret": "whsec_…", "deliveries":
//   [{"headers": {"webhook-id": …}, "body": "…"}]}
// Prints each verified payload's type, one per line; exits 1 at the first that fails.
import { readFileSync } from "node:fs";
import { Webhook } from "standardwebhooks";

const { secret, deliveries } = JSON.parse(readFileSync(process.argv[2], "utf8"));
const wh = new Webhook(secret);
for (const delivery of deliveries) {
  try {
    const payload = wh.verify(delivery.body, delivery.headers);
    console.log(payload.type);
  } catch (error) {
    console.error(`refused: ${error.message}`);
    process.exit(1);
  }
}
