"use client";

import { useEffect, useState } from "react";
import { useRouter } from "next/navigation";
import { customFetch, getUser, logout } from "../lib/bffgate.js";

/** The protected page: the user and the demo API's items, fetched through the gateway. */
export default function HomePage() {
  const router = useRouter();
  const [user, setUser] = useState(null);
  const [items, setItems] = useState(null);
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
      // GET /api/rest/proxy/items: the gateway adds Authorization and refreshes when needed.
      // A 401 (session gone) sends the browser to /login by itself.
      const response = await customFetch("/items");
      if (cancelled) return;
      if (!response.ok) {
        setError(`HTTP ${response.status}`);
        return;
      }
      setItems(await response.json());
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
    </main>
  );
}
