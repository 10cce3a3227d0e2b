// The dashboard's entry: reads its settings (/config.json, written beside the page at deploy
// time: the user pool to sign in with), then shows the sign-in, the fleet (#/) or a device
// (#/device/<name>).
import { configureApi } from "./api.js";
import { idToken, initAuth, signOut, userName } from "./auth.js";
import { deviceView } from "./device.js";
import { fleetView } from "./fleet.js";
import { fatal, makeShell } from "./shell.js";
import { signInView } from "./signin.js";

const root = document.getElementById("app");
let current = null;

async function loadConfig() {
  const r = await fetch("config.json", { cache: "no-store" });
  if (!r.ok) throw new Error(`HTTP ${r.status}`);
  const c = await r.json();
  for (const key of ["userPoolId", "clientId"]) {
    if (typeof c[key] !== "string" || !c[key]) throw new Error(`it has no ${key}`);
  }
  return c;
}

function route() {
  if (current) current.stop();
  current = null;
  const user = userName();
  if (!user) {
    document.title = "Sign in · MotorGuard";
    current = signInView(root, route);
    return;
  }
  const shell = makeShell(root, { user, onSignOut: () => { signOut(); route(); } });
  const m = /^#\/device\/([^/]+)$/.exec(location.hash);
  if (m) {
    const thing = decodeURIComponent(m[1]);
    document.title = `${thing} · MotorGuard`;
    current = deviceView(shell, thing);
  } else {
    document.title = "Fleet · MotorGuard";
    current = fleetView(shell);
  }
}

async function boot() {
  let config;
  try {
    config = await loadConfig();
  } catch (e) {
    fatal(root, `The dashboard cannot start: its settings (config.json) could not be read (${e.message}). ` +
      "Deploy it again (make deploy-cloud), or locally run make demo.");
    return;
  }
  initAuth(config);
  configureApi({ token: idToken, unauthorized: () => { signOut(); route(); } });
  window.addEventListener("hashchange", route);
  route();
}

boot();
