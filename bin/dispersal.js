#!/usr/bin/env node
// Loads the TypeScript CLI in this same process (tsx's loader), so `npx dispersal …` works right
// after `npm ci` and signals such as SIGTERM reach the CLI itself, not a wrapper.
import { register } from "tsx/esm/api";

register();
await import(new URL("../src/cli.ts", import.meta.url).href);
