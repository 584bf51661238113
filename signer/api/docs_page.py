"""``/openapi.json`` and ``/docs``: the generated API description, as JSON and as one HTML page.

Both are public. The page is server-rendered with Jinja from the same dictionary the JSON
serves: no JavaScript, no fonts or styles from elsewhere (the service runs offline). Schemas are
shown as nested lists with ``$ref`` expanded, so a request body reads without chasing components.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, render_template_string
from flask.typing import ResponseReturnValue
from markupsafe import Markup, escape

from signer.api import openapi

bp = Blueprint(openapi.DOCS_BLUEPRINT, __name__)
MAX_DEPTH = 8  # nesting shown before "(see above)": schemas here are shallow; this guards cycles
SHARED = frozenset({"Problem"})  # shown once at the top, not under every error response
_CONSTRAINTS = ("minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "uniqueItems",
                "pattern", "default")
_CODE = re.compile(r"``?([^`]+)``?")


@bp.get("/openapi.json")
def openapi_json() -> ResponseReturnValue:
    """The OpenAPI 3.1 description of this service."""
    return jsonify(spec_for(current_app))


@bp.get("/docs")
def docs() -> ResponseReturnValue:
    """The API reference as one self-contained HTML page."""
    return render(spec_for(current_app)), 200, {"Content-Type": "text/html; charset=utf-8"}


def spec_for(app: Flask) -> dict[str, Any]:
    """The description of ``app``, built once (Flask allows no new routes after the first request)."""
    spec: dict[str, Any] | None = app.extensions.get("signer.openapi")
    if spec is None:
        spec = app.extensions["signer.openapi"] = openapi.build_spec(app)
    return spec


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ spec.info.title }}: API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:1rem 2rem;color:#1d2430}
h1{margin-bottom:0} .sub{color:#555;margin-top:.2rem} code{font:13px ui-monospace,monospace}
code{background:#f3f4f6;padding:0 .2em} nav a{margin-right:1rem}
section.op{border:1px solid #d7dbe0;border-radius:6px;margin:1rem 0;padding:.2rem 1rem}
.m{display:inline-block;min-width:4.2em;text-align:center;color:#fff;border-radius:4px;padding:0 .3em}
.get{background:#2f6fb3} .post{background:#2d8a4e} .put{background:#b7791f} .delete{background:#b23b3b}
.patch{background:#6b46c1} .path{font:600 15px ui-monospace,monospace}
.req{color:#b23b3b} .t{color:#6b46c1} .n{color:#555} table{border-collapse:collapse}
td,th{border-bottom:1px solid #e5e7eb;padding:.2rem .6rem;text-align:left;vertical-align:top}
ul.s{margin:.2rem 0;padding-left:1.2rem} summary{cursor:pointer}
</style></head><body>
{% macro tree(nodes) %}<ul class="s">{% for n in nodes %}<li>
{% if n.name %}<code>{{ n.name }}</code>{% if n.required %} <span class="req">required</span>{% endif %}
{% endif %} <span class="t">{{ n.type }}</span>
{% for note in n.notes %}<span class="n"> &middot; {{ md_inline(note) }}</span>{% endfor %}
{% if n.children %}{{ tree(n.children) }}{% endif %}</li>{% endfor %}</ul>{% endmacro %}
<h1>{{ spec.info.title }}</h1>
<p class="sub">Tài liệu API của dịch vụ ký số từ xa cho văn bản điện tử của cơ quan nhà nước</p>
<p>Version {{ spec.info.version }} &middot; OpenAPI {{ spec.openapi }}:
<a href="openapi.json">openapi.json</a></p>
{{ md(spec.info.description) }}
<h3 id="problem">Problem (error body)</h3>{{ tree([problem]) }}
<p>Authentication:</p><ul>{% for name, s in spec.components.securitySchemes.items() %}
<li><b>{{ name }}</b>: {{ md_inline(s.description) }}</li>{% endfor %}</ul>
<nav>{% for g in groups %}<a href="#tag-{{ g.name }}">{{ g.name }}</a>{% endfor %}</nav>
{% for g in groups %}<h2 id="tag-{{ g.name }}">{{ g.name }}</h2>
{% if g.description %}<p>{{ md_inline(g.description) }}</p>{% endif %}
{% for op in g.ops %}<section class="op" id="{{ op.id }}">
<h3><span class="m {{ op.method }}">{{ op.method | upper }}</span> <span class="path">{{ op.path }}</span>
</h3><p><b>{{ op.summary }}</b></p>{% if op.description %}{{ md(op.description) }}{% endif %}
<p>Auth: {{ op.auth }}</p>
{% if op.params %}<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>schema</th><th></th></tr>
{% for p in op.params %}<tr><td><code>{{ p.name }}</code>
{% if p.required %} <span class="req">required</span>{% endif %}</td><td>{{ p.in }}</td>
<td>{{ tree([p.schema]) }}</td><td>{{ md_inline(p.description or "") }}</td></tr>{% endfor %}</table>
{% endif %}
{% if op.body %}<h4>Request body{% if not op.body.required %} (optional){% endif %}</h4>
{% if op.body.description %}<p>{{ md_inline(op.body.description) }}</p>{% endif %}
{% for media, node in op.body.content %}<p><code>{{ media }}</code></p>{{ tree([node]) }}{% endfor %}
{% endif %}
<h4>Responses</h4><table>{% for r in op.responses %}<tr><td><b>{{ r.status }}</b></td>
<td>{{ md_inline(r.description) }}{% for name, text in r.headers %}
<br>header <code>{{ name }}</code>: {{ md_inline(text) }}{% endfor %}</td>
<td>{% for media, node in r.content %}{% if node.children %}<details><summary><code>{{ media }}</code>
<span class="t">{{ node.type }}</span></summary>{{ tree([node]) }}</details>{% else %}<code>{{ media }}</code>
<span class="t">{{ node.type }}</span><br>{% endif %}{% endfor %}</td></tr>{% endfor %}</table>
</section>{% endfor %}{% endfor %}
</body></html>
"""


def render(spec: dict[str, Any]) -> str:
    """The HTML page for ``spec`` (an OpenAPI 3.1 document as built by :mod:`signer.api.openapi`)."""
    problem = _Resolver(spec, collapse=frozenset()).node({"$ref": "#/components/schemas/Problem"}, "",
                                                         False)
    return render_template_string(TEMPLATE, spec=spec, groups=_groups(spec), problem=problem,
                                  md=_markdown, md_inline=_inline)


def _groups(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Operations grouped by tag, in the order of ``spec["tags"]``."""
    resolver = _Resolver(spec)
    groups = {t["name"]: {"name": t["name"], "description": t.get("description", ""), "ops": []}
              for t in spec.get("tags", [])}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody")
            entry = {
                "id": op.get("operationId", f"{method}-{path}"), "method": method, "path": path,
                "summary": op.get("summary", ""), "description": op.get("description", ""),
                "auth": " or ".join(name for s in op.get("security", []) for name in s) or "public",
                "params": [p | {"schema": resolver.node(p.get("schema", {}), "", False)}
                           for p in op.get("parameters", [])],
                "body": body and {"required": body.get("required", False),
                                  "description": body.get("description", ""),
                                  "content": resolver.content(body.get("content", {}))},
                "responses": [{"status": status, "description": r.get("description", ""),
                               "headers": [(n, h.get("description", ""))
                                           for n, h in r.get("headers", {}).items()],
                               "content": resolver.content(r.get("content", {}))}
                              for status, r in op.get("responses", {}).items()],
            }
            for tag in op.get("tags", ["default"]):
                groups.setdefault(tag, {"name": tag, "description": "", "ops": []})["ops"].append(entry)
    return [g for g in groups.values() if g["ops"]]


class _Resolver:
    """Turns JSON Schemas into ``{name, type, required, notes, children}`` trees for the page."""

    def __init__(self, spec: dict[str, Any], collapse: frozenset[str] = SHARED) -> None:
        self.schemas: dict[str, Any] = spec.get("components", {}).get("schemas", {})
        self.collapse = collapse
        self.expanded: set[str] = set()  # within one body: a model is expanded once, then "as above"

    def content(self, content: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """One tree per media type of a body (its other media types refer to the first)."""
        self.expanded = set()
        out = [(media, self.node(m.get("schema", {}), "", False)) for media, m in content.items()]
        self.expanded = set()
        return out

    def node(self, schema: dict[str, Any], name: str, required: bool,
             seen: tuple[str, ...] = ()) -> dict[str, Any]:
        ref = schema.get("$ref", "")
        if ref:
            target = ref.rpartition("/")[2]
            if target in self.collapse or target in seen or target in self.expanded or len(seen) >= MAX_DEPTH:
                note = "see the top of the page" if target in self.collapse else "as above"
                return {"name": name, "type": target, "required": required, "notes": [note], "children": []}
            self.expanded.add(target)
            merged = self.schemas.get(target, {}) | {k: v for k, v in schema.items() if k != "$ref"}
            out = self.node(merged, name, required, (*seen, target))
            out["type"] = f"{target}: {out['type']}" if out["type"] else target
            return out
        children: list[dict[str, Any]] = []
        notes = [str(schema["description"])] if schema.get("description") else []
        label = self._type(schema, children, notes, seen)
        notes += [f"{key}: `{_literal(schema[key])}`" for key in _CONSTRAINTS if key in schema]
        return {"name": name, "type": label, "required": required, "notes": notes, "children": children}

    def _type(self, schema: dict[str, Any], children: list[dict[str, Any]], notes: list[str],
              seen: tuple[str, ...]) -> str:
        """A one-line type label; nested properties go into ``children``, variants' notes to ``notes``."""
        kind = schema.get("type", "")
        variants = schema.get("anyOf") or schema.get("oneOf")
        label = str(kind)
        if "const" in schema:
            label = f"= {schema['const']!r}"
        elif "enum" in schema:
            label = "one of " + ", ".join(str(v) for v in schema["enum"])
        elif variants:
            subs = [self.node(v, "", False, seen) for v in variants]
            children.extend(c for sub in subs for c in sub["children"])
            notes.extend(n for sub in subs for n in sub["notes"] if n not in notes)
            label = " | ".join(sub["type"] or "any" for sub in subs)
        elif kind == "array" and "prefixItems" in schema:
            parts = [self.node(s, "", False, seen)["type"] for s in schema["prefixItems"]]
            label = "[" + ", ".join(parts) + "]"
        elif kind == "array":
            item = self.node(schema.get("items", {}), "", False, seen)
            children.extend(item["children"])
            label = f"array of {item['type'] or 'any'}"
        elif "properties" in schema or kind == "object":
            required = set(schema.get("required", []))
            children.extend(self.node(s, prop, prop in required, seen)
                            for prop, s in schema.get("properties", {}).items())
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                children.append(self.node(extra, "(any other name)", False, seen))
            label = "object"
        fmt = schema.get("format") or schema.get("contentMediaType")
        return f"{label} ({fmt})" if fmt and label else label or str(fmt or "")


def _literal(value: Any) -> str:
    """A constraint as written in JSON, but strings (patterns) without JSON escaping."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _inline(text: str) -> Markup:
    """Escape ``text`` and turn Markdown (or reST) code spans into ``<code>``."""
    return Markup(_CODE.sub(lambda m: f"<code>{m[1]}</code>", str(escape(text))))  # noqa: S704  # escaped


def _markdown(text: str) -> Markup:
    """Just enough Markdown for the descriptions here: paragraphs, ``- `` lists, code spans."""
    html: list[str] = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line.strip()]
        if lines and all(line.startswith("- ") for line in lines):
            html.append("<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "</ul>")
        elif lines:
            html.append(f"<p>{_inline(' '.join(lines))}</p>")
    return Markup("\n".join(html))  # noqa: S704  # built from escaped pieces
