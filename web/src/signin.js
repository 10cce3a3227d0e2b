// The sign-in view: shown whenever there is no session.
import { signIn } from "./auth.js";
import { el, setText } from "./dom.js";

export function signInView(root, onSignedIn) {
  const error = el("p", { class: "problem", role: "alert", hidden: true, id: "signin-error" });
  const user = el("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const password = el("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = el("button", { type: "submit" }, "Sign in");
  const form = el("form", { class: "signin", "aria-describedby": "signin-error" },
    el("h1", {}, "MotorGuard fleet dashboard"),
    el("p", {}, "Sign in to see and command your devices."),
    el("label", { for: "username" }, "User name"), user,
    el("label", { for: "password" }, "Password"), password,
    submit, error);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    submit.disabled = true;
    setText(submit, "Signing in…");
    error.hidden = true;
    try {
      await signIn(user.value.trim(), password.value);
      password.value = "";
      onSignedIn();
    } catch (err) {
      setText(error, err.message);
      error.hidden = false;
      submit.disabled = false;
      setText(submit, "Sign in");
      password.focus();
    }
  });
  root.replaceChildren(el("main", { id: "main", class: "narrow" }, form));
  user.focus();
  return { stop() {} };
}
