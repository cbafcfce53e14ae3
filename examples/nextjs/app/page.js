"use client";

import { useEffect, useState } from "react";
import { useRouter } from "next/navigation";
import { customFetch, getUser, logout } from "../lib/bffgate.js";

/**
 * The protected page: the user, the demo API's items (the default route, /api/rest/proxy/* →
 * REMOTE_API) and a second API's answer (the route /api/catalogue/, token rule user-or-none).
 */
export default function HomePage() {
  const router = useRouter();
  const [user, setUser] = useState(null);
  const [items, setItems] = useState(null);
  const [catalogue, setCatalogue] = useState(null);
  const [error, setError] = useState("");

  useEffect(() => {
    let cancelled = false;
    (async () => {
      const session = await getUser(); // GET /api/auth/user: the user, never a token
      if (cancelled) return;
      if (!session) {
        router.replace(`/login?returnTo=${encodeURIComponent("/")}`);
        return;
      }
      setUser(session.user);
      // Both APIs at once, each through the gateway.
      // GET /api/rest/proxy/items: the default route; the gateway adds Authorization and refreshes
      // when needed. A 401 (session gone) sends the browser to /login by itself.
      // GET /api/catalogue/featured: a configured route (token rule user-or-none): a plain fetch with
      // the cookies and X-CSRF (every route wants it); the gateway sends the user's token with a
      // session and none without.
      const [response, catalogueResponse] = await Promise.all([
        customFetch("/items"),
        fetch("/api/catalogue/featured", { credentials: "same-origin", headers: { "X-CSRF": "1" } }),
      ]);
      if (cancelled) return;
      if (!response.ok || !catalogueResponse.ok) {
        setError(`HTTP ${response.ok ? catalogueResponse.status : response.status}`);
        return;
      }
      setItems(await response.json());
      setCatalogue(await catalogueResponse.json());
    })().catch((err) => setError(String(err)));
    return () => {
      cancelled = true;
    };
  }, [router]);

  async function onLogout() {
    await logout();
    router.replace("/login");
  }

  if (!user) return <main><p id="checking">Checking your session…</p></main>;
  return (
    <main>
      <h1>Items</h1>
      <p>
        Signed in as <strong id="user-name">{user.name ?? user.id}</strong>{" "}
        <button id="logout" type="button" onClick={onLogout}>Log out</button>
      </p>
      {error && <p id="error" role="alert" style={{ color: "crimson" }}>{error}</p>}
      {items === null ? (
        <p>Loading…</p>
      ) : (
        <ul id="items">
          {items.map((item) => (
            <li key={item.id}>
              {item.name} — {item.price}
            </li>
          ))}
        </ul>
      )}
      <h2>Catalogue</h2>
      {/* The second API's JSON answer as it came, whatever that API is. */}
      {catalogue === null ? <p>Loading…</p> : <pre id="catalogue">{JSON.stringify(catalogue, null, 2)}</pre>}
    </main>
  );
}
