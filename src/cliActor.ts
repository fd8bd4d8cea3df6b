// Who the CLI acts as: the OS user running it, mapped by OPS_CLI_USERS to an OPS_USERS name of the
// role the command needs (operator for requeue, service for payments). Anything else is refused.
import type { Config } from "./config.js";

export interface CliActor {
  /** The OPS_USERS name: the actor of the audit rows and postings. */
  name: string;
  /** The OS user that ran the command, recorded beside it. */
  osUser: string;
}

export class CliActorRefusedError extends Error {
  readonly code = "CLI_ACTOR_REFUSED";
  constructor(message: string) {
    super(message);
    this.name = "CliActorRefusedError";
  }
}

/**
 * The name the OS user may act under for this role. `requested` (--actor) only chooses among the
 * names mapped to this OS user; an OS user with one such name needs no --actor.
 */
export function cliActor(config: Pick<Config, "OPS_USERS" | "OPS_CLI_USERS">, osUser: string, role: "operator" | "service", requested?: string): CliActor {
  const names = config.OPS_CLI_USERS.filter((m) => m.osUser === osUser)
    .map((m) => config.OPS_USERS.find((u) => u.name === m.name))
    .filter((u) => u?.role === role)
    .map((u) => u!.name);
  const mapping = `OPS_CLI_USERS=${osUser}:<name>, with <name> an OPS_USERS entry of role ${role}`;
  if (requested !== undefined) {
    if (names.includes(requested)) return { name: requested, osUser };
    throw new CliActorRefusedError(`--actor ${requested} is not a${role === "operator" ? "n" : ""} ${role} OS user ${osUser} may act as (${mapping}); nothing was changed`);
  }
  if (names.length === 1) return { name: names[0]!, osUser };
  if (names.length === 0) throw new CliActorRefusedError(`OS user ${osUser} may not act as a${role === "operator" ? "n" : ""} ${role} (${mapping}); nothing was changed`);
  throw new CliActorRefusedError(`OS user ${osUser} may act as ${names.join(", ")}: say which with --actor; nothing was changed`);
}
