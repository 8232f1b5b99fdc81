// ai-engine dashboard: polls the JSON endpoints (docs/dashboard.md) and draws plain SVG.
// Every value from the store goes in through textContent or an SVG attribute, never as HTML.
"use strict";

(function () {
  const POLL_MS = 1500;
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  function row(cells) {
    const tr = document.createElement("tr");
    for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
    return tr;
  }

  function td(text, cls) { return el("td", text === null || text === undefined ? "–" : text, cls); }

  function fmt(x, digits) {
    if (x === null || x === undefined) return "–";
    return typeof x === "number" ? x.toFixed(digits === undefined ? 2 : digits) : String(x);
  }

  function utc(ms) {
    if (ms === null || ms === undefined) return "–";
    return new Date(ms).toISOString().replace("T", " ").slice(0, 19);
  }

  function setText(id, text) { document.getElementById(id).textContent = text; }

  function fill(id, rows) {
    const body = document.querySelector("#" + id + " tbody");
    body.replaceChildren(...rows);
  }

  async function getJSON(path) {
    const resp = await fetch(path, { cache: "no-store", credentials: "same-origin" });
    if (!resp.ok) throw new Error(path + ": HTTP " + resp.status);
    return resp.json();
  }

  // A bar chart of [label, value] (and an optional second value) into an <svg> of viewBox w x h.
  function bars(id, items, second) {
    const chart = document.getElementById(id);
    const vb = chart.viewBox.baseVal;
    const w = vb.width, h = vb.height, pad = 18, base = h - pad;
    const nodes = [svg("line", { x1: 0, y1: base, x2: w, y2: base, class: "axis" })];
    const max = Math.max(1, ...items.map((d) => Math.max(d[1] || 0, second ? d[2] || 0 : 0)));
    const slot = items.length ? w / items.length : w;
    const bw = Math.max(1, slot * (second ? 0.38 : 0.7));
    items.forEach((d, i) => {
      const x = i * slot + slot * 0.12;
      const v = d[1] || 0;
      const bh = (v / max) * (base - 12);
      nodes.push(svg("rect", { x: x, y: base - bh, width: bw, height: bh, class: "bar" }, undefined));
      nodes[nodes.length - 1].appendChild(svg("title", {}, d[0] + ": " + fmt(d[1], 0)));
      if (second) {
        const v2 = d[2] || 0;
        const bh2 = (v2 / max) * (base - 12);
        nodes.push(svg("rect", { x: x + bw, y: base - bh2, width: bw, height: bh2, class: "bar2" }));
        nodes[nodes.length - 1].appendChild(svg("title", {}, d[0] + " p99: " + fmt(d[2], 1)));
      }
      if (items.length <= 24 || i % Math.ceil(items.length / 12) === 0) {
        nodes.push(svg("text", { x: x, y: h - 4 }, d[0]));
      }
      if (items.length <= 24 && v > 0) {
        nodes.push(svg("text", { x: x, y: base - bh - 2 }, fmt(v, second ? 1 : 0)));
      }
    });
    if (!items.length) nodes.push(svg("text", { x: 8, y: base / 2 }, "no data"));
    if (second) {
      nodes.push(svg("rect", { x: w - 120, y: 2, width: 8, height: 8, class: "bar" }));
      nodes.push(svg("text", { x: w - 108, y: 10 }, "p50"));
      nodes.push(svg("rect", { x: w - 70, y: 2, width: 8, height: 8, class: "bar2" }));
      nodes.push(svg("text", { x: w - 58, y: 10 }, "p99"));
    }
    chart.replaceChildren(...nodes);
  }

  function renderModels(m) {
    setText("config", m.config_id ? "config " + m.config_id + " (" + (m.applied_reason || "") + ", " + utc(m.applied_at) + ")" : "no configuration recorded");
    fill("models", m.models.map((x) => {
      const tr = row([
        td(x.model, "mono"), td(x.role, "role-" + x.role), td(fmt(x.weight, 0)), td(x.status),
        td(x.version, "mono"), td(x.sha256 ? x.sha256.slice(0, 16) + "…" : null, "mono"),
        td(x.env_role === null ? (m.configured ? "not configured" : "–") : x.env_role + " / " + fmt(x.env_weight, 0)),
      ]);
      tr.dataset.model = x.model;
      if (x.sha256) tr.cells[5].title = x.sha256;
      if (x.reason) tr.cells[3].title = x.reason;
      return tr;
    }));
    if (m.env_error) setText("config", "env file error: " + m.env_error);
  }

  function renderGovernor(g) {
    const box = document.getElementById("governor");
    box.replaceChildren();
    if (!g.available) {
      box.appendChild(el("div", "unavailable", "kill"));
      box.appendChild(el("div", g.error || "", "muted"));
      return;
    }
    box.appendChild(el("div", g.kill ? "KILL SWITCH ON" : "kill switch off", g.kill ? "kill" : "open"));
    box.appendChild(el("div", "mode " + g.mode));
    box.appendChild(el("div", "set by " + (g.updated_by || "?") + " at " + utc(g.updated_at), "muted"));
    if (g.reason) box.appendChild(el("div", "why: " + g.reason, "muted"));
  }

  function renderSummary(s) {
    setText("window", "newest " + s.window + " (" + utc(s.first_candle_open_time) + " – " + utc(s.last_candle_open_time) + ")");
    setText("n-actionable", s.actionable);
    setText("n-published", s.published);
    setText("n-blocked", s.blocked);
    setText("n-latency", fmt(s.decision_latency_ms.p99, 1));
    const reasons = Object.entries(s.blocked_reasons);
    const ul = document.getElementById("blocked-reasons");
    ul.replaceChildren(...(reasons.length ? reasons.map(([r, n]) => el("li", n + " × " + r)) : [el("li", "none", "muted")]));
    bars("chart-rate", s.decisions_per_minute.map((d) => [utc(d.minute).slice(11, 16), d.count]));
    bars("chart-consensus", Object.entries(s.consensus).map(([k, v]) => [k + " agree", v]));
  }

  function renderLatency(l) {
    setText("latency-window", "newest " + l.rows_limit + " predictions per model; flat-line: confidence std < " +
      l.flatline_min_std + " over the newest " + l.flatline_window);
    fill("latency", l.models.map((m) => {
      const tr = row([td(m.model, "mono"), td(m.role, "role-" + m.role), td(m.rows), td(fmt(m.p50_ms, 1)),
        td(fmt(m.p99_ms, 1)), td(m.errors),
        td(Object.entries(m.statuses).map(([k, v]) => k + " " + v).join(", ")),
        td(m.flatline ? "FLAT (std " + fmt(m.confidence_std, 4) + ")" : "std " + fmt(m.confidence_std, 4),
          m.flatline ? "flat" : ""), td(m.last_error)]);
      tr.dataset.model = m.model;
      return tr;
    }));
    bars("chart-latency", l.models.map((m) => [m.model, m.p50_ms, m.p99_ms]), true);
  }

  function breakdown(mb) {
    const d = el("details");
    const names = Object.keys(mb || {});
    d.appendChild(el("summary", names.length + " models"));
    const ul = el("ul", null, "breakdown");
    for (const name of names) {
      const m = mb[name] || {};
      ul.appendChild(el("li", name + ": " + m.role + ", " + m.status + ", " + (m.action || "–") + " " +
        fmt(m.confidence, 3) + ", w " + fmt(m.weight, 0) + ", " + fmt(m.latency_ms, 1) + " ms" +
        (m.reason ? ", " + m.reason : "")));
    }
    d.appendChild(ul);
    const cell = el("td");
    cell.appendChild(d);
    return cell;
  }

  function renderDecisions(d) {
    fill("decisions", d.decisions.map((x) => {
      const tr = row([td(utc(x.candle_open_time)), td(x.symbol, "mono"), td(x.action, x.action),
        td(fmt(x.confidence, 3)), td(x.consensus_count + "/" + x.total_models), td(x.actionable ? "yes" : "no"),
        td(x.published ? "yes" : "no"), td(x.blocked_reason), breakdown(x.model_breakdown)]);
      tr.dataset.eventId = x.event_id;
      return tr;
    }));
  }

  function renderShadow(sh) {
    const box = document.getElementById("shadow");
    const nodes = [];
    for (const m of sh.models) {
      const pre = el("pre", m.lines.map((l) => utc(l.candle_open_time) + " " + l.line).join("\n"), "log");
      pre.dataset.model = m.model;
      nodes.push(el("h3", m.display + " (" + m.model + ")"), pre);
    }
    if (!nodes.length) nodes.push(el("div", "no shadow model in the store", "muted"));
    box.replaceChildren(...nodes);
  }

  function table(head, rows) {
    const t = el("table");
    const thead = el("thead");
    thead.appendChild(row(head.map((h) => el("th", h))));
    const body = el("tbody");
    for (const r of rows) body.appendChild(row(r));
    t.append(thead, body);
    return t;
  }

  // Lines of {name: [y...]} into an <svg> of viewBox w x h, with a legend; colours by class.
  function lines(curves, w, h) {
    const chart = svg("svg", { viewBox: "0 0 " + w + " " + h, class: "chart equity", role: "img" });
    const names = Object.keys(curves);
    const all = names.flatMap((n) => curves[n]).filter((v) => v !== null);
    if (!all.length) return chart;
    const lo = Math.min(...all), hi = Math.max(...all), pad = 14, span = hi - lo || 1;
    const y = (v) => pad + (h - 2 * pad) * (1 - (v - lo) / span);
    chart.appendChild(svg("line", { x1: 0, y1: y(1), x2: w, y2: y(1), class: "axis" }));
    chart.appendChild(svg("text", { x: 2, y: pad - 3 }, fmt(hi, 3)));
    chart.appendChild(svg("text", { x: 2, y: h - 2 }, fmt(lo, 3)));
    names.forEach((n, k) => {
      const c = curves[n];
      const pts = c.map((v, i) => (i * w / Math.max(1, c.length - 1)).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
      chart.appendChild(svg("polyline", { points: pts, class: "curve c" + k }));
      chart.appendChild(svg("rect", { x: w - 190, y: 4 + k * 12, width: 8, height: 8, class: "swatch c" + k }));
      chart.appendChild(svg("text", { x: w - 178, y: 12 + k * 12 }, n));
    });
    return chart;
  }

  function pct(x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(2) + "%"; }

  function renderAnalysis(a) {
    setText("analysis-state", a.enabled ? "newest " + a.hours + " h, " + a.state +
      (a.computed_at ? ", computed " + utc(a.computed_at) : "") : "off");
    const box = document.getElementById("analysis");
    const nodes = [];
    if (a.error) nodes.push(el("div", a.error, "muted"));
    for (const m of a.models) {
      const sec = el("div", null, "analysis");
      sec.dataset.model = m.model;
      sec.appendChild(el("h3", m.model + ": " + (m.verdict_line || m.error || "")));
      if (!m.error) {
        sec.appendChild(table(["gate", "metric", "value", "interval", "threshold", "status", "detail"],
          m.gates.map((g) => [td(g.name), td(g.metric), td(fmt(g.value, 4)),
            td("[" + fmt(g.lo, 4) + ", " + fmt(g.hi, 4) + "]"), td(g.threshold), td(g.status, "gate-" + g.status),
            td(g.detail)])));
        sec.appendChild(el("div", "edge: " + (m.edge_verdict || "–") + " (anytime " + (m.edge_anytime_verdict || "–") +
          ")" + (m.edge_reason ? ": " + m.edge_reason : "") + (m.edge_error ? " — " + m.edge_error : "")));
        sec.appendChild(el("div", "recommendation: option " + (m.recommendation.option || "–") +
          (m.recommendation.reason ? ": " + m.recommendation.reason : "")));
        sec.appendChild(table(["counterfactual", "actions changed", "net return", "vs champion (mean, interval, p)"],
          m.scenarios.map((sc) => [td(sc.name), td(sc.actions_changed), td(pct(sc.net_return)),
            td(fmt(sc.vs_champion.mean, 5) + " [" + fmt(sc.vs_champion.lo, 5) + ", " + fmt(sc.vs_champion.hi, 5) +
              "] p " + fmt(sc.vs_champion.p_value, 3))])));
        if (m.equity && Object.keys(m.equity).length) {
          sec.appendChild(el("div", "equity after costs (start 1)", "muted"));
          sec.appendChild(lines(m.equity, 1200, 160));
        }
        sec.appendChild(table(["strategy", "net return", "Sharpe", "max drawdown", "trades", "hit rate"],
          Object.entries(m.strategies).map(([name, s]) => [td(name), td(pct(s.net_return)), td(fmt(s.sharpe, 2)),
            td(pct(s.max_drawdown)), td(s.trades), td(pct(s.hit_rate))])));
      }
      nodes.push(sec);
    }
    if (!nodes.length) nodes.push(el("div", a.enabled ? "no shadow model analysed yet" : "off", "muted"));
    box.replaceChildren(...nodes);
  }

  function renderAudit(a) {
    setText("audit-source", a.source ? a.source : "");
    const rows = a.entries.map((e) => row([td(e.when), td(e.who), td(e.what),
      td(e.before === undefined ? null : JSON.stringify(e.before), "mono"),
      td(e.after === undefined ? null : JSON.stringify(e.after), "mono")]));
    if (!rows.length) rows.push(row([td(a.error || "no audit entries", "muted")]));
    fill("audit", rows);
  }

  function renderPolicy(p) {
    setText("policy-mode", p.mode ? "AI_ENGINE_POLICY=" + p.mode : "");
    const box = document.getElementById("policy");
    const nodes = [];
    if (p.error) nodes.push(el("div", p.error, "kill"));
    if (p.config) {
      const c = p.config;
      nodes.push(el("div", c.model + ": shadow " + c.shadow_hours + " h and " + c.min_predictions +
        " predictions → option B (" + c.b_weight + "%) → " + c.b_hours + " h, live edge not WORSE → option A (" +
        c.a_weight + "%); rollback on FAIL: " + c.rollback_on_fail + ", on WORSE: " + c.rollback_on_worse, "muted"));
    }
    const s = p.state;
    if (s) {
      nodes.push(table(["model", "sha256", "stage", "paused", "since", "last said"],
        [[td(s.model), td(s.sha256 ? String(s.sha256).slice(0, 12) : null, "mono"), td(s.stage),
          td(s.paused ? "paused" : "no"), td(utc(s.stage_since_ms)), td(s.said)]]));
    } else if (!p.error) {
      nodes.push(el("div", p.mode === null ? "no env file: the policy's settings are unknown" :
        (p.mode === "off" ? "off" : "no run yet"), "muted"));
    }
    box.replaceChildren(...nodes);
  }

  const parts = [
    ["/api/overview", (o) => setText("source", o.store + (o.env_file ? " · " + o.env_file : ""))],
    ["/api/models", renderModels],
    ["/api/governor", renderGovernor],
    ["/api/summary", renderSummary],
    ["/api/latency", renderLatency],
    ["/api/shadow", renderShadow],
    ["/api/analysis", renderAnalysis],
    ["/api/decisions?limit=50", renderDecisions],
    ["/api/audit", renderAudit],
    ["/api/policy", renderPolicy],
  ];

  let busy = false;
  async function poll() {
    if (busy) return;
    busy = true;
    const status = document.getElementById("status");
    try {
      const docs = await Promise.all(parts.map(([path]) => getJSON(path)));
      docs.forEach((doc, i) => parts[i][1](doc));
      status.textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
      status.className = "status";
    } catch (err) {
      status.textContent = "update failed: " + err.message;
      status.className = "status error";
    } finally {
      busy = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    poll();
    setInterval(poll, POLL_MS);
  });
})();
