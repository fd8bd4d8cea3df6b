// Runs in every test worker: quiet logs unless LOG_LEVEL asks for them.
import { log } from "../../src/log.js";

log.level = process.env.LOG_LEVEL ?? "silent";
