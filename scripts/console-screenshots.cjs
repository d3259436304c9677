// Screenshots of every console page for docs/console/, made against the
// real binary with a little made-up traffic. Run by
// scripts/console-screenshots.sh (not by the tests).
//
//   SY_BIN=path/to/switchyard SY_NODE_MODULES=... SY_CHROMIUM=... node scripts/console-screenshots.cjs
"use strict";
const fs = require("fs");
const http = require("http");
const os = require("os");
const path = require("path");
const { spawn } = require("child_process");
const { chromium } = require(path.join(process.env.SY_NODE_MODULES, "playwright-core"));

const OUT = path.join(__dirname, "..", "docs", "console");
const ADMIN = "sy_" + "0".repeat(62) + "ad";

// A chat-completions upstream answering every call, a little slowly.
function upstream() {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        const r = JSON.parse(body || "{}");
        const words = JSON.stringify(r.messages || []).split(/\s+/).length;
        const answer = {
          id: "c", object: "chat.completion", created: 1, model: r.model,
          choices: [{ index: 0, message: { role: "assistant", content: "Done: the summary you asked for." }, finish_reason: "stop" }],
          usage: { prompt_tokens: 40 * words, completion_tokens: 120, total_tokens: 40 * words + 120 },
        };
        setTimeout(() => { res.setHeader("content-type", "application/json"); res.end(JSON.stringify(answer)); }, 20);
      });
    });
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

async function api(base, method, p, key, body) {
  const res = await fetch(base + p, { method, headers: { authorization: "Bearer " + key, "content-type": "application/json" }, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  if (!res.ok) { throw new Error(`${method} ${p}: ${res.status} ${text}`); }
  return text ? JSON.parse(text) : null;
}

async function main() {
  const up = await upstream();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sy-shots-"));
  const upUrl = `http://127.0.0.1:${up.address().port}/v1`;
  fs.writeFileSync(path.join(dir, "switchyard.toml"), [
    `[[models]]\nid = "gpt-4o-mini"\nbase_url = "${upUrl}"\ninput_per_mtok = 0.15\noutput_per_mtok = 0.6\nfallbacks = ["claude-haiku"]\n`,
    `[[models]]\nid = "claude-haiku"\nbase_url = "${upUrl}"\ninput_per_mtok = 0.8\noutput_per_mtok = 4.0\n`,
    `[[models]]\nid = "gpt-4o"\nbase_url = "${upUrl}"\ninput_per_mtok = 2.5\noutput_per_mtok = 10.0\nfallbacks = ["gpt-4o-mini"]\n`,
  ].join("\n"));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(process.env.SY_BIN, ["serve"], {
    env: { ...process.env, DATABASE_URL: `sqlite://${dir}/sy.db`, SWITCHYARD_CONFIG: path.join(dir, "switchyard.toml"),
           ADMIN_API_KEY: ADMIN, JWT_SECRET: "screenshots-secret-0123456789abcdef0123", PORT: String(port), HOST: "127.0.0.1",
           LOCAL_MODEL_PRELOAD: "false", TASKS_DIR: path.join(dir, "tasks"), LOG_LEVEL: "warn" },
    stdio: ["ignore", "inherit", "inherit"],
  });
  try {
    for (let i = 0; ; i++) {
      try { if ((await fetch(base + "/health")).ok) { break; } } catch (e) { /* starting */ }
      if (i > 200) { throw new Error("the service did not start"); }
      await new Promise((r) => setTimeout(r, 100));
    }
    const keys = [];
    for (const [name, project, owner] of [["billing-service", "billing", "billing@example.com"], ["search-indexer", "search", "search@example.com"], ["alice-laptop", "research", "alice@example.com"]]) {
      keys.push(await api(base, "POST", "/v1/admin/keys", ADMIN, { name, project, owner }));
    }
    await api(base, "PUT", "/v1/admin/budgets", ADMIN, { scope: "project", subject: "billing", period: "monthly", limit_usd: 0.05 });
    await api(base, "PUT", "/v1/admin/budgets", ADMIN, { scope: "key", subject: keys[2].id, period: "daily", limit_usd: 0.02 });
    const models = ["gpt-4o-mini", "gpt-4o", "claude-haiku"];
    for (let i = 0; i < 24; i++) {
      const k = keys[i % keys.length];
      await fetch(base + "/v1/chat/completions", { method: "POST", headers: { authorization: "Bearer " + k.key, "content-type": "application/json" },
        body: JSON.stringify({ model: i === 7 ? "no-such-model" : models[i % models.length], messages: [{ role: "user", content: "Summarise ticket " + i + " in three lines for the weekly report" }] }) });
    }
    await api(base, "POST", `/v1/admin/keys/${keys[1].id}/rotate`, ADMIN, {});
    await api(base, "POST", "/v1/task", keys[2].key, { description: "Summarise the notes", model: "gpt-4o-mini", allow_tools: ["Read"], async: true });
    await new Promise((r) => setTimeout(r, 1500));

    const browser = await chromium.launch({ executablePath: process.env.SY_CHROMIUM, headless: true });
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: "light" });
    const page = await ctx.newPage();
    await page.goto(base + "/console/login");
    await page.screenshot({ path: path.join(OUT, "login.png") });
    await page.fill("#key", ADMIN);
    await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
    const shots = [["overview", "/console"], ["keys", "/console/keys"], ["budgets", "/console/budgets"], ["usage", "/console/usage?group_by=model"],
                   ["tasks", "/console/tasks"], ["audit", "/console/audit"], ["models", "/console/models"], ["rollouts", "/console/rollouts"]];
    for (const [name, p] of shots) {
      await page.goto(base + p);
      await page.waitForTimeout(300);
      await page.screenshot({ path: path.join(OUT, name + ".png"), fullPage: true });
    }
    await page.goto(base + "/console/keys");
    await page.fill("input[name=name]", "reporting-job");
    await page.fill("input[name=project]", "billing");
    await Promise.all([page.waitForNavigation(), page.click("form[action='/console/keys'] button[type=submit]")]);
    await page.screenshot({ path: path.join(OUT, "key-created.png") });
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const p2 = await phone.newPage();
    await p2.goto(base + "/console/login");
    await p2.fill("#key", ADMIN);
    await Promise.all([p2.waitForNavigation(), p2.click("button[type=submit]")]);
    await p2.goto(base + "/console/usage");
    await p2.waitForTimeout(300);
    await p2.screenshot({ path: path.join(OUT, "usage-phone.png") });
    await browser.close();
    console.log("screenshots written to " + OUT);
  } finally {
    child.kill("SIGTERM");
    up.close();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
