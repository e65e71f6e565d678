// Signs an inbound webhook the way its sender's own library does — Standard Webhooks'
// reference library (npm `standardwebhooks`) or Stripe's (npm `stripe`) — so the suite
// proves Palisade verifies their format, not its own. Usage:
//   node sign-webhook.mjs FILE   where FILE is {"scheme": "standard"|"stripe", "secret": …,
//   "id": …, "timestamp": unix seconds, "body": "…"}
// Prints the headers to send, as a JSON object.
import { readFileSync } from "node:fs";
import { Webhook } from "standardwebhooks";
import Stripe from "stripe";

const { scheme, secret, id, timestamp, body } = JSON.parse(readFileSync(process.argv[2], "utf8"));
if (scheme === "standard") {
  const signature = new Webhook(secret).sign(id, new Date(timestamp * 1000), body);
  console.log(JSON.stringify({
    "webhook-id": id,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": signature,
  }));
} else {
  const stripe = new Stripe("sk_test_interop");
  const header = stripe.webhooks.generateTestHeaderString({ payload: body, secret, timestamp });
  console.log(JSON.stringify({ "stripe-signature": header }));
}
