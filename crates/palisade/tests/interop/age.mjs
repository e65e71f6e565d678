// age, as the reference TypeScript implementation (age-encryption, by age's author) reads
// and writes it: the backup tests make the operator's key pair and open a backup with it,
// so Palisade's backups are proven readable by an implementation that is not ours.
//   node age.mjs keygen IDENTITY_FILE        (the file age-keygen writes)
//   node age.mjs decrypt IDENTITY_FILE IN OUT
import * as age from "age-encryption";
import { readFileSync, writeFileSync } from "node:fs";

const [command, ...args] = process.argv.slice(2);
if (command === "keygen" && args.length === 1) {
  const identity = await age.generateIdentity();
  const recipient = await age.identityToRecipient(identity);
  writeFileSync(args[0], `# public key: ${recipient}\n${identity}\n`, { mode: 0o600 });
} else if (command === "decrypt" && args.length === 3) {
  const [identityFile, input, output] = args;
  const identity = readFileSync(identityFile, "utf8")
    .split("\n")
    .find((line) => line.startsWith("AGE-SECRET-KEY-"));
  const decrypter = new age.Decrypter();
  decrypter.addIdentity(identity);
  writeFileSync(output, await decrypter.decrypt(readFileSync(input), "uint8array"));
} else {
  console.error("usage: node age.mjs keygen IDENTITY_FILE | decrypt IDENTITY_FILE IN OUT");
  process.exit(2);
}
