// The frame every view sits in: a header with the user and Sign out, one line of status (polite,
// for screen readers too), one place for problems (an alert), and the view's own content.
import { el, routeHref, setText } from "./dom.js";
import { timeZone } from "./format.js";

export function makeShell(root, { user, onSignOut }) {
  const status = el("p", { class: "status", role: "status", "aria-live": "polite" });
  const problem = el("div", { class: "problem", role: "alert", hidden: true });
  const main = el("main", { id: "main", tabindex: "-1" });
  root.replaceChildren(
    el("a", { class: "skip", href: "#main", onclick: (e) => { e.preventDefault(); main.focus(); } }, "Skip to content"),
    el("header", { class: "top" },
      el("a", { class: "brand", href: routeHref() }, "MotorGuard"),
      el("nav", { "aria-label": "Main" }, el("a", { href: routeHref() }, "Fleet")),
      user ? el("span", { class: "user" }, "Signed in as ", el("strong", {}, user)) : null,
      user ? el("button", { type: "button", class: "quiet", onclick: onSignOut }, "Sign out") : null),
    problem,
    status,
    main,
    el("footer", {}, `Times in your time zone (${timeZone}). Temperatures in °C, currents in A, positions in degrees.`),
  );
  return {
    main,
    ok(text) {
      problem.hidden = true;
      setText(problem, "");
      setText(status, text);
    },
    fail(text) {
      setText(problem, text);
      problem.hidden = false;
    },
  };
}

// A full-page message for what stops the page before it can start (no settings, say).
export function fatal(root, text) {
  root.replaceChildren(el("main", { id: "main" },
    el("h1", {}, "MotorGuard dashboard"),
    el("p", { class: "problem", role: "alert" }, text)));
}
