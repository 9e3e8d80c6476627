"""Inline LaTeX of the notebooks' titles and summaries as HTML a reader can read.

The served app shows each notebook's first-cell summary; JupyterLab typesets its `$...$`, a
Panel Markdown pane would print it raw ("$\\sigma$"). `tex_html` turns the small inline
subset the summaries use into text: Greek letters and relations as Unicode symbols, `x_i` and
`x^{1-w}` as <sub>/<sup>, spacing commands as spaces, everything outside `$...$` untouched.
A command it does not know stays visible with its backslash, so a test can find it.
"""

from __future__ import annotations

import html
import re
import unicodedata

__all__ = ["tex_html"]

_GREEK = (
    "alpha beta gamma delta epsilon zeta eta theta kappa lambda mu nu xi pi rho sigma tau phi "
    "chi psi omega"
).split()


def _greek(name: str, case: str) -> str:
    return unicodedata.lookup(f"GREEK {case} LETTER {name.upper().replace('LAMBDA', 'LAMDA')}")


_SYMBOLS = {
    **{name: _greek(name, "SMALL") for name in _GREEK},
    **{name.capitalize(): _greek(name, "CAPITAL") for name in _GREEK},
    "varepsilon": "ε",
    "varphi": "φ",
    "mid": " | ",
    "propto": " ∝ ",
    "approx": " ≈ ",
    "sim": " ~ ",
    "le": " ≤ ",
    "leq": " ≤ ",
    "ge": " ≥ ",
    "geq": " ≥ ",
    "neq": " ≠ ",
    "times": " × ",
    "cdot": " · ",
    "to": " → ",
    "otimes": " ⊗ ",
    "top": "ᵀ",
    "max": "max",
    "min": "min",
    "infty": "∞",
    "nabla": "∇",
    "partial": "∂",
    "sqrt": "√",
    "ell": "ℓ",
    "log": "log ",
    "exp": "exp ",
    ",": " ",
    ";": " ",
    "!": "",
    "quad": "  ",
}
# \mathrm{x}, \text{x}, ...: the argument as plain text
_TEXT_COMMANDS = ("mathrm", "text", "mathit", "mathbf", "operatorname")
_MATH = re.compile(r"\$([^$]+)\$")
_COMMAND = re.compile(r"\\([A-Za-z]+|[,;!])")
_GROUP = r"\{([^{}]*)\}"


def _script(math: str, mark: str, tag: str) -> str:
    """x^{1-w} / x^w -> x<sup>1-w</sup> (braces first, then one character)."""
    math = re.sub(re.escape(mark) + _GROUP, rf"<{tag}>\1</{tag}>", math)
    return re.sub(re.escape(mark) + r"([^\s<{}])", rf"<{tag}>\1</{tag}>", math)


def _math_html(math: str) -> str:
    for command in _TEXT_COMMANDS:
        math = re.sub(rf"\\{command}{_GROUP}", r"\1", math)
    math = _COMMAND.sub(lambda m: _SYMBOLS.get(m.group(1), m.group(0)), math)
    math = math.replace("-", "−")
    math = _script(_script(math, "^", "sup"), "_", "sub")
    math = math.replace("{", "").replace("}", "")
    return " ".join(math.split()).replace(" )", ")").replace("( ", "(")


def tex_html(text: str) -> str:
    """``text`` with every inline ``$...$`` rendered as HTML (the rest HTML-escaped)."""
    parts, last = [], 0
    for match in _MATH.finditer(text):
        parts.append(html.escape(text[last : match.start()], quote=False))
        parts.append(_math_html(html.escape(match.group(1), quote=False)))
        last = match.end()
    parts.append(html.escape(text[last:], quote=False))
    return "".join(parts)
