// Sign-in with the Cognito user pool, the same code path locally (moto's user pool) and in AWS:
// InitiateAuth with USER_PASSWORD_AUTH against the endpoint config.json names.
//
// Tokens are kept in this tab's sessionStorage (gone when the tab closes), sent only in the
// Authorization header of the page's own API requests, and never put in a URL or a log line.
import { AuthenticationDetails, CognitoUser, CognitoUserPool } from "amazon-cognito-identity-js";

const storage = {
  getItem: (key) => sessionStorage.getItem(key),
  setItem: (key, value) => sessionStorage.setItem(key, value),
  removeItem: (key) => sessionStorage.removeItem(key),
  clear: () => sessionStorage.clear(),
};

let pool = null;

export function initAuth(config) {
  pool = new CognitoUserPool({
    UserPoolId: config.userPoolId,
    ClientId: config.clientId,
    endpoint: config.cognitoEndpoint || undefined,
    Storage: storage,
  });
}

function explain(err, endpoint) {
  const code = err && (err.code || err.name);
  if (code === "NotAuthorizedException" || code === "UserNotFoundException") {
    return "Wrong user name or password.";
  }
  if (code === "PasswordResetRequiredException") return "This account's password must be reset by an administrator.";
  if (code === "NetworkError" || (err && /fetch|network/i.test(String(err.message)))) {
    return `Cannot reach the sign-in service (${endpoint}). Check the connection and try again.`;
  }
  return `Sign-in failed: ${err && err.message ? err.message : "unknown error"}`;
}

export function signIn(username, password) {
  return new Promise((resolve, reject) => {
    const user = new CognitoUser({ Username: username, Pool: pool, Storage: storage });
    user.setAuthenticationFlowType("USER_PASSWORD_AUTH");
    user.authenticateUser(new AuthenticationDetails({ Username: username, Password: password }), {
      onSuccess: () => resolve(),
      onFailure: (err) => reject(new Error(explain(err, pool.client.endpoint))),
      newPasswordRequired: () => reject(new Error(
        "This account still has its temporary password: an administrator must set a permanent one " +
        "(admin-set-user-password --permanent, docs/dashboard.md).")),
      mfaRequired: () => reject(new Error("This account asks for MFA, which the dashboard does not support yet.")),
      totpRequired: () => reject(new Error("This account asks for MFA, which the dashboard does not support yet.")),
    });
  });
}

export function userName() {
  const user = pool && pool.getCurrentUser();
  return user ? user.getUsername() : null;
}

// The ID token for the API (what API Gateway's Cognito authorizer checks); an expired one is
// refreshed with the refresh token first. Rejects when there is no session any more.
export function idToken() {
  return new Promise((resolve, reject) => {
    const user = pool && pool.getCurrentUser();
    if (!user) {
      reject(new Error("not signed in"));
      return;
    }
    user.getSession((err, session) => {
      if (err || !session || !session.isValid()) reject(new Error("the session has ended"));
      else resolve(session.getIdToken().getJwtToken());
    });
  });
}

export function signOut() {
  const user = pool && pool.getCurrentUser();
  if (user) user.signOut();
}
