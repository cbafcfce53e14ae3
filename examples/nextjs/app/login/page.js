"use client";

import { useState } from "react";
import { useRouter } from "next/navigation";
import { BffError, login } from "../../lib/bffgate.js";

/** Only a local path ("/x", not "//x" or a URL) is followed after login. */
function safeReturnTo(value) {
  return value && /^\/(?![/\\])/.test(value) ? value : "/";
}

export default function LoginPage() {
  const router = useRouter();
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  async function onSubmit(event) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setError("");
    setBusy(true);
    try {
      // POST /api/auth/login with X-CSRF; the gateway answers with HttpOnly cookies only.
      await login({ username: form.get("username"), password: form.get("password") });
      router.replace(safeReturnTo(new URLSearchParams(window.location.search).get("returnTo")));
    } catch (err) {
      setError(err instanceof BffError ? `Login failed (${err.status}): ${err.code ?? err.message}` : String(err));
      setBusy(false);
    }
  }

  return (
    <main>
      <h1>Log in</h1>
      <p id="login-error" role="alert" style={{ color: "crimson" }}>{error}</p>
      <form id="login-form" onSubmit={onSubmit}>
        <p>
          <label htmlFor="username">Username</label>
          <br />
          <input id="username" name="username" defaultValue="demo" autoComplete="username" required />
        </p>
        <p>
          <label htmlFor="password">Password</label>
          <br />
          <input id="password" name="password" type="password" defaultValue="demo" autoComplete="current-password" required />
        </p>
        <button id="login-button" type="submit" disabled={busy}>Log in</button>
      </form>
    </main>
  );
}
