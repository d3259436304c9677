// The console in a real browser: headless Chromium (Debian's, at
// SY_CHROMIUM) driven by playwright-core (from SY_NODE_MODULES) against the
// running binary at SY_BASE. Run by crates/cli/tests/console.rs, which
// starts the service and reads the JSON this prints last. Any failed check
// throws, and the script exits 1 with the reason.
"use strict";
const path = require("path");
const { chromium } = require(path.join(process.env.SY_NODE_MODULES, "playwright-core"));

const BASE = process.env.SY_BASE;
const ADMIN = process.env.SY_ADMIN;
const USER = process.env.SY_USER;
const T = 15000;

function check(cond, what) {
  if (!cond) { throw new Error("check failed: " + what); }
}

async function api(method, p, key, body) {
  const res = await fetch(BASE + p, {
    method,
    headers: { authorization: "Bearer " + key, "content-type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  check(res.ok, `${method} ${p} answered ${res.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

async function signIn(page, key) {
  await page.goto(BASE + "/console/login");
  await page.fill("#key", key);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
}

async function main() {
  const out = { steps: [] };
  const step = (s) => { out.steps.push(s); console.error("step: " + s); };
  const browser = await chromium.launch({ executablePath: process.env.SY_CHROMIUM, headless: true });
  const errors = [];
  try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    page.on("console", (m) => { if (m.type() === "error") { errors.push(m.text()); } });
    page.on("dialog", (d) => d.accept());

    step("sign in as admin");
    await signIn(page, ADMIN);
    check(new URL(page.url()).pathname === "/console", "admin lands on the overview, not " + page.url());
    check((await page.textContent("h1")) === "Overview", "overview heading");
    const cookies = await ctx.cookies();
    const session = cookies.find((c) => c.name === "sy_console");
    check(session && session.httpOnly && session.sameSite === "Strict", "session cookie is HttpOnly and SameSite=Strict");

    step("create a key and read its secret once");
    await page.goto(BASE + "/console/keys");
    await page.fill("input[name=name]", "browser-key");
    await page.fill("input[name=project]", "web");
    await page.fill("input[name=owner]", "web@example.com");
    await Promise.all([page.waitForNavigation(), page.click("form[action='/console/keys'] button[type=submit]")]);
    check((await page.textContent("h1")) === "Key created", "key created page");
    const secret = (await page.textContent("#secret")).trim();
    check(/^sy_[0-9a-f]{64}$/.test(secret), "a secret is shown: " + secret);
    check(await page.isVisible("button[data-copy=secret]"), "a copy button");
    const keyHref = await page.getAttribute("a[href^='/console/keys/key_']", "href");
    const keyId = keyHref.split("/").pop();
    out.key_id = keyId;
    await page.goto(BASE + "/console/keys");
    check(!(await page.content()).includes(secret), "the secret is not shown again");
    check(await page.isVisible(`a[href='/console/keys/${keyId}']`), "the new key is listed");

    step("a chat call with the new key shows in the usage chart and table");
    const chat = await api("POST", "/v1/chat/completions", secret, {
      model: "fast", messages: [{ role: "user", content: "hello from the browser test" }],
    });
    check(chat.choices && chat.choices.length === 1, "the chat call answered");
    let row = null;
    for (let i = 0; i < 40 && !row; i++) {
      await page.goto(BASE + "/console/usage?group_by=key");
      const cell = page.locator(`td a[href='/console/usage?key_id=${keyId}']`);
      if (await cell.count()) { row = cell.locator("xpath=ancestor::tr"); break; }
      await page.waitForTimeout(250);
    }
    check(row, "the key's usage row appears");
    const cells = await row.locator("td").allTextContents();
    check(cells[1] === "1", "one request in the table, got " + cells.join(" | "));
    await page.waitForSelector("#usage-chart .uplot", { timeout: T });
    const spec = JSON.parse(await page.getAttribute("#usage-chart", "data-chart"));
    const requests = spec.series.find((s) => s.name === "requests").values.reduce((a, b) => a + b, 0);
    check(requests >= 1, "the chart counts the request");
    out.usage_row = cells;
    const csv = await page.evaluate(async (u) => (await fetch(u)).text(), "/console/usage.csv?group_by=key");
    check(csv.startsWith("key,requests,errors") && csv.includes(keyId + ",1,0,"), "CSV export: " + csv);

    step("rotate the key");
    await page.goto(BASE + "/console/keys");
    await Promise.all([page.waitForNavigation(), page.click(`form[action='/console/keys/${keyId}/rotate'] button`)]);
    check((await page.textContent("h1")) === "Key rotated", "key rotated page");
    const successorSecret = (await page.textContent("#secret")).trim();
    check(/^sy_[0-9a-f]{64}$/.test(successorSecret) && successorSecret !== secret, "a new secret");
    const successorId = (await page.getAttribute("main a[href^='/console/keys/key_']", "href")).split("/").pop();
    out.successor_id = successorId;

    step("revoke the successor");
    await page.goto(BASE + "/console/keys/" + successorId);
    await Promise.all([page.waitForNavigation(), page.click(`form[action='/console/keys/${successorId}/revoke'] button`)]);
    const revoked = await fetch(BASE + "/v1/models", { headers: { authorization: "Bearer " + successorSecret } });
    check(revoked.status === 401, "the revoked key is refused, got " + revoked.status);

    step("watch a task's log arrive live and cancel it");
    const task = await api("POST", "/v1/task", ADMIN, {
      description: "sleep", model: "agent-sleep", allow_tools: ["Bash"], async: true,
    });
    const watcher = await ctx.newPage();
    await watcher.goto(BASE + "/console/tasks/" + task.task_id);
    await watcher.waitForSelector("#log li[data-kind=tool_call]", { timeout: T });
    const before = await watcher.locator("#log li").count();
    check((await watcher.textContent("#task-status")) !== "cancelled", "running before the cancel");
    await page.goto(BASE + "/console/tasks/" + task.task_id);
    await Promise.all([page.waitForNavigation(), page.click("button:has-text('Cancel task')")]);
    // The watcher page was not reloaded: the end arrives over its stream.
    await watcher.waitForFunction(() => document.querySelector("#task-status").textContent === "cancelled", null, { timeout: T });
    await watcher.waitForFunction(() => document.querySelector("#log").dataset.state === "done", null, { timeout: T });
    out.log_entries = { before_cancel: before, after: await watcher.locator("#log li").count() };
    await page.goto(BASE + "/console/tasks");
    check(await page.isVisible(`a[href='/console/tasks/${task.task_id}']`), "the task is listed");

    step("an audit entry for each action");
    await page.goto(BASE + "/console/audit");
    for (const event of ["key.created", "key.rotated", "key.revoked"]) {
      const rows = page.locator("tr", { has: page.locator(`[data-event='${event}']`) }).filter({ hasText: "console" });
      check((await rows.count()) >= 1, "an audit record of " + event + " made through the console");
    }
    await Promise.all([page.waitForNavigation(), page.click("a:has-text('verify the chain now')")]);
    check((await page.getAttribute("#chain-status", "class")) === "ok", "the audit chain verifies");

    step("every page renders without console errors");
    for (const p of ["/console", "/console/keys", "/console/budgets", "/console/usage", "/console/tasks", "/console/audit", "/console/models", "/console/rollouts"]) {
      const res = await page.goto(BASE + p);
      check(res.status() === 200, p + " answered " + res.status());
    }
    await page.goto(BASE + "/console");
    await page.waitForSelector("#overview-chart .uplot", { timeout: T });

    step("sign out");
    await Promise.all([page.waitForNavigation(), page.click("button:has-text('Sign out')")]);
    check(new URL(page.url()).pathname === "/console/login", "back at the sign-in page");
    const again = await page.goto(BASE + "/console/keys");
    check(new URL(page.url()).pathname === "/console/login", "signed out: " + again.status());

    step("a non-admin key cannot reach admin pages");
    const userCtx = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const userPage = await userCtx.newPage();
    userPage.on("dialog", (d) => d.accept());
    await signIn(userPage, USER);
    check(new URL(userPage.url()).pathname === "/console/usage", "a user lands on usage, not " + userPage.url());
    const nav = await userPage.locator("header nav a").allTextContents();
    check(!nav.includes("Keys") && !nav.includes("Audit") && nav.includes("Usage"), "user navigation: " + nav.join(","));
    for (const p of ["/console/keys", "/console/audit", "/console/rollouts", "/console/keys/" + keyId]) {
      const res = await userPage.goto(BASE + p);
      check(res.status() === 403, p + " is forbidden to a user key, got " + res.status());
    }
    const own = await userPage.goto(BASE + "/console/usage?key_id=" + keyId);
    check(own.status() === 403, "another key's usage is forbidden, got " + own.status());
    for (const p of ["/console/usage", "/console/tasks", "/console/budgets"]) {
      const res = await userPage.goto(BASE + p);
      check(res.status() === 200, p + " is open to a user key, got " + res.status());
    }
    await userCtx.close();
    check(errors.length === 0, "no errors in the browser console: " + errors.join("; "));
  } finally {
    await browser.close();
  }
  out.ok = true;
  console.log(JSON.stringify(out));
}

main().catch((e) => { console.error(e && e.stack ? e.stack : String(e)); process.exit(1); });
