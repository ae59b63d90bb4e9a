/* The dynamic-group rule editor (templates/admin/devices/devicegroup/change_form.html).
 *
 * Rows of field / operator / value under "all" or "any", written into the group's JSON field (which the form posts
 * as before: the groups service validates it), and a live "N devices match" preview from the group admin's
 * rule-preview view (devices.services.groups.preview). The fields and operators come from devices.rules through
 * the page's <script type="application/json" id="rule-grammar"> block; nothing here knows the rule language beyond
 * the value shapes the grammar names (none, single, list, range, duration).
 *
 * A rule the rows cannot show (groups inside groups) is left to the JSON field; the preview still follows it.
 * The pure functions at the top (parseRule, buildRule, valueOf, rawOf) are also exported for tests under Node.
 */
(function () {
  "use strict";

  var NUMBER = /^\s*-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$/;

  function fieldNamed(grammar, name) {
    for (var i = 0; i < grammar.fields.length; i++) {
      if (grammar.fields[i].name === name) return grammar.fields[i];
    }
    return null;
  }

  function shapeOf(grammar, operator) {
    var op = grammar.operators[operator];
    return op ? op.shape : "single";
  }

  /* A typed text as the rule wants it: a number for number fields when it reads as one (else the text, which the
     server refuses with a message naming the node), true/false for booleans. */
  function scalar(field, text) {
    if (field && field.type === "number" && NUMBER.test(text)) return Number(text);
    if (field && field.type === "boolean") return text === "true";
    return text;
  }

  function listOf(text) {
    return String(text || "").split(/[,\n]/).map(function (item) { return item.trim(); })
      .filter(function (item) { return item !== ""; });
  }

  /* The value of a row from what was typed (raw: {text, items, from, to, amount, unit}); undefined for an operator
     without one. */
  function valueOf(grammar, row) {
    var field = fieldNamed(grammar, row.field);
    var raw = row.raw || {};
    switch (shapeOf(grammar, row.operator)) {
      case "none":
        return undefined;
      case "list":
        return raw.items ? raw.items.slice() : listOf(raw.text);
      case "range":
        return { from: scalar(field, String(raw.from || "").trim()), to: scalar(field, String(raw.to || "").trim()) };
      case "duration":
        return { amount: NUMBER.test(String(raw.amount)) ? Number(raw.amount) : raw.amount, unit: raw.unit || "hours" };
      default:
        return scalar(field, String(raw.text === undefined ? "" : raw.text).trim());
    }
  }

  /* What a row shows for a value of the rule (the inverse of valueOf). */
  function rawOf(grammar, operator, value) {
    switch (shapeOf(grammar, operator)) {
      case "none":
        return {};
      case "list":
        var items = Array.isArray(value) ? value.map(String) : [];
        return { text: items.join(", "), items: items };
      case "range":
        value = value || {};
        return { from: value.from === undefined ? "" : String(value.from), to: value.to === undefined ? "" : String(value.to) };
      case "duration":
        value = value || {};
        return { amount: value.amount === undefined ? "" : String(value.amount), unit: value.unit || "hours" };
      default:
        return { text: value === undefined || value === null ? "" : String(value) };
    }
  }

  function isCondition(node) {
    return node && typeof node === "object" && !Array.isArray(node) && "field" in node && !("conditions" in node);
  }

  /* The rows of a rule, or null when the rows cannot show it (groups inside groups, not a rule at all). */
  function parseRule(grammar, rule) {
    if (rule === null || rule === undefined || rule === "") return { mode: "AND", rows: [] };
    var conditions;
    var mode = "AND";
    if (isCondition(rule)) {
      conditions = [rule];
    } else if (rule && typeof rule === "object" && (rule.operator === "AND" || rule.operator === "OR") &&
               Array.isArray(rule.conditions) && rule.conditions.every(isCondition)) {
      conditions = rule.conditions;
      mode = rule.operator;
    } else {
      return null;
    }
    return {
      mode: mode,
      rows: conditions.map(function (c) {
        return { field: c.field, operator: c.operator, raw: rawOf(grammar, c.operator, c.value) };
      }),
    };
  }

  /* The rule of the rows: a group of conditions, or null without rows. */
  function buildRule(grammar, state) {
    if (!state.rows.length) return null;
    return {
      operator: state.mode,
      conditions: state.rows.map(function (row) {
        var condition = { field: row.field, operator: row.operator };
        var value = valueOf(grammar, row);
        if (value !== undefined) condition.value = value;
        return condition;
      }),
    };
  }

  if (typeof module !== "undefined" && module.exports) {
    module.exports = { parseRule: parseRule, buildRule: buildRule, valueOf: valueOf, rawOf: rawOf };
  }
  if (typeof document === "undefined") return;

  // --- The page -------------------------------------------------------------------------------------------------

  function element(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (key) {
      if (key === "text") node.textContent = attributes[key];
      else node.setAttribute(key, attributes[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function option(value, label, selected) {
    var node = element("option", { value: value, text: label });
    if (selected) node.selected = true;
    return node;
  }

  function onChange(node, handler) {
    if (!node) return;
    node.addEventListener("change", handler);
    // Django's autocomplete (select2) announces a choice through jQuery only.
    if (window.django && window.django.jQuery) window.django.jQuery(node).on("change", handler);
  }

  function start() {
    var box = document.getElementById("rule-editor");
    var grammarBlock = document.getElementById("rule-grammar");
    var textarea = document.querySelector('textarea[name="filter_rules"]');
    if (!box || !grammarBlock || !textarea) return;
    var grammar = JSON.parse(grammarBlock.textContent);
    var orgSelect = document.getElementById("id_org");
    var siteSelect = document.getElementById("id_site");
    var typeSelect = document.getElementById("id_type");
    var csrf = document.querySelector('input[name="csrfmiddlewaretoken"]');
    var row = textarea.closest(".form-row") || textarea.parentNode;
    row.parentNode.insertBefore(box, row);

    var state = { mode: "AND", rows: [] };
    var editable = true;
    var timer = null;
    var asked = 0;

    var modeSelect = element("select", { "class": "rule-mode", "aria-label": "Match all or any" }, [
      option("AND", "all"), option("OR", "any"),
    ]);
    var rowsBox = element("div", { "class": "rule-rows" });
    var addButton = element("button", { type: "button", "class": "rule-add", text: "Add a condition" });
    var note = element("p", { "class": "rule-note help" });
    var preview = element("div", { "class": "rule-preview", "aria-live": "polite" });
    box.appendChild(element("h3", { text: "Rule" }));
    box.appendChild(element("p", { "class": "rule-lead" }, [
      document.createTextNode("Devices matching "), modeSelect, document.createTextNode(" of these conditions:"),
    ]));
    box.appendChild(rowsBox);
    box.appendChild(addButton);
    box.appendChild(note);
    box.appendChild(preview);

    function orgId() { return orgSelect ? orgSelect.value : box.dataset.orgId; }
    function siteId() { return siteSelect ? siteSelect.value : box.dataset.siteId; }
    function groupType() { return typeSelect ? typeSelect.value : box.dataset.groupType; }

    function sitesOfOrg() {
      var org = orgId();
      return grammar.sites.filter(function (site) { return !org || site.org === org; });
    }

    function valueInputs(entry) {
      var field = fieldNamed(grammar, entry.field);
      var shape = shapeOf(grammar, entry.operator);
      var raw = entry.raw = entry.raw || {};
      var wrap = element("span", { "class": "rule-value rule-value-" + shape });
      var choices = null;
      if (field && field.sites && grammar.sitesComplete) {
        choices = sitesOfOrg().map(function (site) { return [site.id, site.name]; });
      } else if (field && field.choices && field.choices.length) {
        choices = field.choices.map(function (choice) { return [choice, choice]; });
      } else if (field && field.type === "boolean") {
        choices = [["true", "true"], ["false", "false"]];
      }
      function text(key, attributes) {
        var input = element("input", Object.assign({ type: "text", "aria-label": key }, attributes || {}));
        input.value = raw[key] === undefined ? "" : raw[key];
        input.addEventListener("input", function () { raw[key] = input.value; changed(); });
        return input;
      }
      if (shape === "none") return wrap;
      if (shape === "list" && choices) {
        var many = element("select", { multiple: "multiple", size: String(Math.min(5, choices.length)), "aria-label": "values" });
        var picked = raw.items || listOf(raw.text);
        choices.forEach(function (c) { many.appendChild(option(c[0], c[1], picked.indexOf(c[0]) >= 0)); });
        many.addEventListener("change", function () {
          raw.items = Array.prototype.filter.call(many.options, function (o) { return o.selected; })
            .map(function (o) { return o.value; });
          changed();
        });
        wrap.appendChild(many);
      } else if (shape === "list") {
        delete raw.items;
        wrap.appendChild(text("text", { placeholder: "values, separated by commas", size: "40" }));
      } else if (shape === "range") {
        var hint = field && field.type === "datetime" ? "2025-05-01T08:00:00Z" : "";
        wrap.appendChild(text("from", { placeholder: hint || "from", size: "22" }));
        wrap.appendChild(document.createTextNode(" and "));
        wrap.appendChild(text("to", { placeholder: hint || "to", size: "22" }));
      } else if (shape === "duration") {
        wrap.appendChild(text("amount", { type: "number", min: "1", size: "6" }));
        var unit = element("select", { "aria-label": "unit" });
        grammar.units.forEach(function (u) { unit.appendChild(option(u, u, (raw.unit || "hours") === u)); });
        raw.unit = unit.value;
        unit.addEventListener("change", function () { raw.unit = unit.value; changed(); });
        wrap.appendChild(unit);
      } else if (choices) {
        var one = element("select", { "aria-label": "value" });
        one.appendChild(option("", "—"));
        choices.forEach(function (c) { one.appendChild(option(c[0], c[1], raw.text === c[0])); });
        one.addEventListener("change", function () { raw.text = one.value; changed(); });
        wrap.appendChild(one);
      } else {
        var placeholder = field && field.type === "datetime" ? "2025-05-01T08:00:00Z" : "";
        wrap.appendChild(text("text", { placeholder: placeholder, size: "30",
          type: field && field.type === "number" ? "number" : "text", step: "any" }));
      }
      return wrap;
    }

    function rowElement(entry, index) {
      var fieldSelect = element("select", { "class": "rule-field", "aria-label": "field" });
      grammar.fields.forEach(function (f) { fieldSelect.appendChild(option(f.name, f.label, f.name === entry.field)); });
      var field = fieldNamed(grammar, entry.field);
      var operatorSelect = element("select", { "class": "rule-operator", "aria-label": "operator" });
      (field ? field.operators : []).forEach(function (op) {
        var label = grammar.operators[op] ? grammar.operators[op].label : op;
        operatorSelect.appendChild(option(op, label, op === entry.operator));
      });
      if (field && field.operators.indexOf(entry.operator) < 0) {
        entry.operator = field.operators[0];
        entry.raw = {};
      }
      fieldSelect.addEventListener("change", function () {
        entry.field = fieldSelect.value;
        var next = fieldNamed(grammar, entry.field);
        if (next.operators.indexOf(entry.operator) < 0) entry.operator = next.operators[0];
        entry.raw = {};  // another field's value rarely fits this one (a hostname is not a status)
        renderRows();
        changed();
      });
      operatorSelect.addEventListener("change", function () {
        var previous = shapeOf(grammar, entry.operator);
        entry.operator = operatorSelect.value;
        if (shapeOf(grammar, entry.operator) !== previous) entry.raw = {};
        renderRows();
        changed();
      });
      var remove = element("button", { type: "button", "class": "rule-remove", text: "Remove", "aria-label": "Remove this condition" });
      remove.addEventListener("click", function () {
        state.rows.splice(index, 1);
        renderRows();
        changed();
      });
      return element("div", { "class": "rule-row", "data-index": String(index) },
        [fieldSelect, operatorSelect, valueInputs(entry), remove]);
    }

    function renderRows() {
      rowsBox.textContent = "";
      state.rows.forEach(function (entry, index) { rowsBox.appendChild(rowElement(entry, index)); });
      modeSelect.value = state.mode;
      [modeSelect, addButton].forEach(function (node) { node.disabled = !editable; });
      rowsBox.hidden = !editable;
    }

    function readTextarea() {
      var text = textarea.value.trim();
      var parsed;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch (error) {
        editable = false;
        note.textContent = "The JSON below is not valid yet; the rows come back when it is.";
        renderRows();
        return;
      }
      var rows = parseRule(grammar, parsed);
      editable = rows !== null;
      if (rows) state = rows;
      note.textContent = editable ? "" :
        "This rule nests groups of conditions: edit it as JSON below. The preview follows it.";
      renderRows();
    }

    function currentRule() {
      var text = textarea.value.trim();
      try { return text ? JSON.parse(text) : null; } catch (error) { return undefined; }
    }

    function changed() {
      var rule = buildRule(grammar, state);
      textarea.value = rule === null ? "" : JSON.stringify(rule, null, 2);
      schedulePreview();
    }

    function schedulePreview() {
      clearTimeout(timer);
      timer = setTimeout(askPreview, 400);
    }

    function show(lines, sample) {
      preview.textContent = "";
      lines.forEach(function (line) { preview.appendChild(element("p", line)); });
      if (sample && sample.length) {
        var list = element("ul", { "class": "rule-sample" });
        sample.forEach(function (device) {
          list.appendChild(element("li", {}, [element("a", { href: device.url, text: device.hostname })]));
        });
        preview.appendChild(list);
      }
    }

    function askPreview() {
      var rule = currentRule();
      if (rule === undefined) return show([{ "class": "rule-error", text: "The JSON is not valid." }]);
      if (rule === null) return show([{ "class": "help", text: "Add a condition to see which devices match." }]);
      if (!orgId()) return show([{ "class": "help", text: "Pick the organization to see which devices match." }]);
      var ticket = ++asked;
      preview.classList.add("rule-preview-busy");
      fetch(box.dataset.previewUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf ? csrf.value : "" },
        body: JSON.stringify({ org: orgId(), site: siteId() || null, rule: rule }),
      }).then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      }).then(function (answer) {
        if (ticket !== asked) return;
        preview.classList.remove("rule-preview-busy");
        var body = answer.body;
        if (answer.ok) {
          var count = body.count;
          var more = count > body.sample.length ? " The first " + body.sample.length + ":" : "";
          show([{ "class": "rule-count", "data-count": String(count),
                  text: count + (count === 1 ? " device matches" : " devices match") + " now (of those you can see)." + more }],
               body.sample);
        } else {
          var problems = Object.keys(body.fields || {}).map(function (path) {
            return { "class": "rule-error", text: path + ": " + body.fields[path].join(" ") };
          });
          show(problems.length ? problems : [{ "class": "rule-error", text: body.error || "The preview failed." }]);
        }
      }).catch(function () {
        if (ticket !== asked) return;
        preview.classList.remove("rule-preview-busy");
        show([{ "class": "rule-error", text: "The preview could not be fetched." }]);
      });
    }

    function showForType() {
      box.hidden = groupType() !== "dynamic";
      if (!box.hidden) schedulePreview();
    }

    modeSelect.addEventListener("change", function () { state.mode = modeSelect.value; changed(); });
    addButton.addEventListener("click", function () {
      var first = grammar.fields[0];
      state.rows.push({ field: first.name, operator: first.operators[0], raw: {} });
      renderRows();
      changed();
    });
    textarea.addEventListener("input", function () { readTextarea(); schedulePreview(); });
    onChange(typeSelect, showForType);
    onChange(orgSelect, function () { renderRows(); schedulePreview(); });
    onChange(siteSelect, schedulePreview);

    readTextarea();
    showForType();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
