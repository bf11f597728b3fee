#!/usr/bin/env python3
"""Writes src/screening/data/number_words.tsv from Unicode CLDR's rule-based
number format (RBNF) spellout rules, so the screening matcher reads numbers
written as words ("vingt et un", "veintiuno", "двадцать один") as digits.

Input: the `rbnf/<lang>.json` files of the `cldr-rbnf` npm package
(Unicode-3.0 licence). Usage:

    python3 scripts/number_words_from_cldr.py path/to/cldr-rbnf/rbnf > src/screening/data/number_words.tsv

Output rows: `language<TAB>value<TAB>spelling`, for 0-999 and the whole
thousands 1000-9000, for every rule set listed in RULE_SETS. The spelling is
CLDR's own, with soft hyphens (U+00AD, hyphenation hints, not part of a
word) removed. The matcher folds and tokenises it like any name.

Only the RBNF features these rule sets use are implemented: plain rules,
`←←`/`→→` substitutions (optionally naming a rule set), `=%set=`,
optional `[...]` text, a radix after `/`, and `$(cardinal,...)$` plurals
for Russian and Arabic.
"""

import json
import re
import sys

# The main list languages, with the cardinal rule sets whose spellings
# occur in names (masculine, feminine and neuter forms; English also in
# its "verbose" form, "one hundred and five").
RULE_SETS = {
    "en": ["%spellout-cardinal", "%spellout-cardinal-verbose"],
    "fr": ["%spellout-cardinal-masculine", "%spellout-cardinal-feminine"],
    "es": ["%spellout-numbering", "%spellout-cardinal-masculine", "%spellout-cardinal-feminine"],
    "de": ["%spellout-numbering", "%spellout-cardinal-masculine", "%spellout-cardinal-feminine"],
    "ru": ["%spellout-cardinal-masculine", "%spellout-cardinal-feminine", "%spellout-cardinal-neuter"],
    "ar": ["%spellout-cardinal-masculine", "%spellout-cardinal-feminine"],
}

VALUES = list(range(0, 1000)) + list(range(1000, 10000, 1000))


def plural(lang, n):
    """CLDR cardinal plural category of an integer (the categories the
    chosen rule sets use)."""
    if lang == "ru":
        if n % 10 == 1 and n % 100 != 11:
            return "one"
        if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
            return "few"
        return "many"
    if lang == "ar":
        if n == 0:
            return "zero"
        if n == 1:
            return "one"
        if n == 2:
            return "two"
        if 3 <= n % 100 <= 10:
            return "few"
        if 11 <= n % 100 <= 99:
            return "many"
        return "other"
    return "one" if n == 1 else "other"


class Rbnf:
    def __init__(self, lang, sets):
        self.lang = lang
        self.sets = {}
        for name, rules in sets.items():
            if not isinstance(rules, list):
                continue  # the "_rbnfRulesFile" entry
            parsed = []
            for rule in rules:
                if len(rule) != 2:
                    continue
                base, text = rule
                m = re.fullmatch(r"(\d+)(?:/(\d+))?", base)
                if not m:
                    continue  # negative, fractional, infinity, NaN rules
                parsed.append((int(m.group(1)), int(m.group(2) or 10), text.rstrip(";")))
            self.sets[name] = parsed

    def spell(self, name, n):
        rules = self.sets[name]
        base, radix, text = max((r for r in rules if r[0] <= n), key=lambda r: r[0])
        divisor = 1
        while divisor * radix <= base:
            divisor *= radix
        if text.startswith("'"):
            text = text[1:]
        return self.render(text, name, n, divisor)

    def render(self, text, name, n, divisor):
        def optional(m):
            return "" if n % divisor == 0 else m.group(1)

        text = re.sub(r"\[([^\]]*)\]", optional, text)

        def sub(m):
            arrow, target = m.group(1), m.group(2) or name
            if arrow == "=":
                return self.spell(target, n)
            if arrow == "←":
                return self.spell(target, n // divisor)
            return self.spell(target, n % divisor)

        text = re.sub(r"([←→=])(%%?[\w-]+)?\1", sub, text)

        def plural_sub(m):
            forms = dict(re.findall(r"(\w+)\{([^}]*)\}", m.group(1)))
            cat = plural(self.lang, n // divisor)
            return forms.get(cat, forms.get("other", forms.get("many", "")))

        return re.sub(r"\$\(cardinal,(.*?)\)\$", plural_sub, text)


def main():
    root = sys.argv[1]
    out = sys.stdout
    out.write("language\tvalue\tspelling\n")
    for lang, sets in RULE_SETS.items():
        data = json.load(open(f"{root}/{lang}.json", encoding="utf-8"))
        rbnf = Rbnf(lang, data["rbnf"]["rbnf"]["SpelloutRules"])
        for n in VALUES:
            seen = []
            for s in sets:
                word = rbnf.spell(s, n).replace("\u00ad", "").strip()
                if word and word not in seen:
                    seen.append(word)
                    out.write(f"{lang}\t{n}\t{word}\n")


if __name__ == "__main__":
    main()
