#!/usr/bin/env python3
"""Build per-nation name pools (core/reference_data/names/<ISO3>.json) from Faker's locale data.

The engine samples names from these files with numpy; Faker is never called at run
time, so the output is stable across Faker versions.  Re-run this script only to
refresh the pools (it records the Faker version in every pool's ``source``):

    .venv/bin/python tools/build_name_pools.py            # write the 34 files
    .venv/bin/python tools/build_name_pools.py --check    # exit 1 if files are stale
    .venv/bin/python tools/build_name_pools.py -v         # also list rejected entries

Inputs
------
* Faker person providers, read directly as class attributes of
  ``faker.providers.person.<locale>.Provider`` (own attributes only, never inherited
  ones; tuples are used as is, OrderedDicts of name -> weight contribute their keys).
* Curated lists ``tools/name_sources/<locale>.json`` where Faker has no usable data
  (each file's "description" says why; all compiled by hand, not copied from a dataset):
    - sq_AL  Albanian (no Faker locale; also the sq pools of MKD and MNE)
    - sr_Latn_ME  Montenegro (no Faker locale), Latin script
    - lb_LU  Luxembourgish (no Faker locale)
    - lt_LT  Faker lt_LT has only an unsexed first_names list and 37 surnames
    - bg_BG  replaces Faker bg_BG entirely: its given names are a collection of unusual
             registered names (Аерозол, Катастрофа ...) without Иван, Петър, Елена ...;
             its surnames are mostly jokes (Макаронски, Шкембова ...)
    - tr_TR  given names replace Faker's (a rare-name dictionary without Mehmet, Ayşe,
             Fatma ...); family names are merged with Faker's 61
  and supplements appended to otherwise usable Faker lists:
    - pl_PL  common given names Faker omits (Anna, Maria, Katarzyna ...) and Nowak
    - ro_RO  surnames (Faker has 44 and lacks Radu, Dumitru, Gheorghe ...)
  Keys: male_given, female_given, family_unisex (used for both sexes),
  male_family (female forms derived by the rules below), female_family.

Output structure (one file per nation, weights per nation sum to 1)::

    {"nation": "BEL", "pools": [
     {"locale": "nl_BE", "language": "nl", "weight": 0.6, "source": "...",
      "male_given": [...], "female_given": [...], "male_family": [...], "female_family": [...]},
     ...]}

Lists keep source order (first occurrence wins); sample them uniformly.

Cleaning rules (all lists)
--------------------------
* Unicode NFC, surrounding whitespace stripped, inner whitespace collapsed, no space
  after an apostrophe ("d' Heripon" -> "d'Heripon"); diacritics and native script kept.
* Dropped: empty strings; titles / honorifics / generational suffixes (Dr., Mr., Jr.,
  II, Ing., pan ... and every prefix/suffix Faker lists for the locale); any token
  with a full stop (abbreviations, initials); single-letter capital tokens (initials);
  characters other than letters, combining marks, hyphen, apostrophe (and space in
  family names); leading/trailing/double hyphens; mixed or unexpected script (Latin
  except bg/mk Cyrillic and el Greek); run-together words ("ЕвроповКирилов", lower
  case followed by capital, except after Mc/Mac/De/Di/Da/Du/La/Le/Van/Von/Fitz).
* A single lower-case word is capitalised (Faker sl_SI 'volk' -> 'Volk').
* Given names must be one word (hyphenated double names such as "Jean-Pierre" are
  kept; space-separated compounds such as es_ES "María Carmen" are dropped).
* Family names may contain spaces (Dutch/Belgian "van der Berg", "De Smet"); a
  lower-case word after a capitalised particle is capitalised ("Da silva" ->
  "Da Silva", Faker de_LU).  English (en_US census) forms are repaired:
  "Mcbride" -> "McBride", "Obrien" -> "O'Brien" (fixed list of Irish O' stems).
* Duplicates removed within each list.

Female family-name forms
------------------------
* cs, sk, el, lv, mk: Faker's own last_names_male / last_names_female.
  lv: Faker's last_names_nonbinary (Ābele, Liepa, ...) go to both sexes.
  mk: lists completed in both directions (-ов/-ова, -ев/-ева, -ин/-ина, -ски/-ска).
* pl: Faker pl_PL has unisex_last_names (3,690; Nowak, Wójcik ...) and
  male_last_names (top 200, incl. -ski).  Male pool = both.  Female pool =
  -ski/-cki/-dzki -> -ska/-cka/-dzka, plus every unisex name except those ending in
  -y/-i (adjectival: Wesoły -> Wesoła; no safe rule, so they stay male-only).
* bg: curated male forms; female -ов -> -ова, -ев -> -ева, -ин -> -ина,
  -ски/-цки -> -ска/-цка.
* lt: male forms (curated + Faker); for each, both the married (-ienė) and the
  maiden form are produced:  -ius -> -ienė / -iūtė;  -us -> -uvienė / -utė;
  -is, -ys -> -ienė / -ytė;  -as, -a -> -ienė / -aitė
  (Kazlauskas -> Kazlauskienė, Kazlauskaitė; Butkus -> Butkuvienė, Butkutė).
* is: patronymics from Faker's is_IS male given names (Faker's own rule appends -s
  naively, e.g. "Aðalsteinns"); here the father's name is put in the genitive:
  overrides (Örn -> Arnar, Hörður -> Harðar, Hjörtur -> Hjartar, Þórður -> Þórðar,
  Hákon -> Hákonar, Pétur -> Péturs, Baldur -> Baldurs ...), else -ir -> -is,
  -i -> -a (weak), -ur -> -s, -einn/-inn -> -eins/-ins, -ll -> -ls, -s/-x kept,
  otherwise + s; then + "son" / + "dóttir" (Jónsson, Arason, Birgisdóttir,
  Sigurðsson, Magnússon).  Father names with c/q/w/z (not in the Icelandic
  alphabet) or ending in a, e, o, u, y are skipped.

Pools per nation (weights are design defaults; multilingual splits per DOMAIN §4.1)
--------------------------------------------------------------------------------
BEL nl_BE .6 / fr_BE .4; CAN en_CA .8 / fr_CA .2; LUX lb_LU .5 / de_LU .5 (defaults).
FIN fi_FI .95 / sv_FI .05 (Swedish speakers ~5 % of Finland; Faker has no sv_FI, the
    sv_SE lists stand in).
EST et_EE .8 / ru_EE .2 (Faker et_EE carries separate Estonian and Russian lists;
    Russian speakers are ~1/4 of the population, fewer in the forces: design).
MKD mk_MK .8 / sq_MK .2 (Albanians ~24 % of the 2021 census; design value lower).
MNE sr_Latn_ME .95 / sq_ME .05 (Albanians ~5 % in the 2011 census).
en_CA and en_AU have no Faker person provider: en_CA = en_US + en_GB lists,
en_AU = en_GB + en_NZ lists (recorded in ``source``).  Everything else: one pool.
"""
from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import faker

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "core" / "reference_data" / "names"
SRC_DIR = ROOT / "tools" / "name_sources"
PINNED_FAKER = "40.63.0"
FAKER_VERSION = faker.VERSION
LISTS = ("male_given", "female_given", "male_family", "female_family")

# --------------------------------------------------------------------------- #
# Reading sources
# --------------------------------------------------------------------------- #


def faker_attr(locale: str, attr: str) -> list[str]:
    """Own (non-inherited) list attribute of a Faker person provider; [] if absent."""
    try:
        mod = importlib.import_module(f"faker.providers.person.{locale}")
    except ModuleNotFoundError:
        return []
    value = mod.Provider.__dict__.get(attr)
    if value is None:
        return []
    return [str(k) for k in value]  # tuple -> items; OrderedDict -> keys


def faker_prefixes(locale: str) -> set[str]:
    """Lower-cased titles/prefixes/suffixes Faker lists for a locale, minus name
    particles (fr_FR lists 'Le', 'de', 'du'; es/pt 'de', 'del', 'da', 'do')."""
    out: set[str] = set()
    for attr in ("prefixes", "prefixes_male", "prefixes_female", "prefixes_nonbinary",
                 "prefixes_neutral", "suffixes", "suffixes_male", "suffixes_female",
                 "suffixes_nonbinary", "degrees", "academic_prefixes", "academic_suffixes"):
        out.update(p.strip(".").lower() for p in faker_attr(locale, attr))
    return {p for p in out if p not in PARTICLES and " " not in p}


def faker_src(*locales: str) -> str:
    return " + ".join(f"Faker {FAKER_VERSION} faker.providers.person.{l}" for l in locales)


def curated(locale: str) -> dict:
    return json.loads((SRC_DIR / f"{locale}.json").read_text(encoding="utf-8"))


def curated_src(locale: str) -> str:
    return f"curated: tools/name_sources/{locale}.json"


# --------------------------------------------------------------------------- #
# Cleaning
# --------------------------------------------------------------------------- #

TITLES = {
    "dr", "mr", "mrs", "ms", "miss", "mx", "prof", "rev", "jr", "sr", "snr", "jnr", "ii",
    "iii", "iv", "phd", "md", "dds", "dvm", "esq", "ing", "mgr", "bc", "mudr", "judr",
    "rndr", "phdr", "csc", "drsc", "dipl", "mme", "mlle", "sra", "srta",
}
CAMEL_OK = {"Mc", "Mac", "De", "Di", "Da", "Du", "La", "Le", "Van", "Von", "Fitz", "O'", "D'"}
PARTICLES = {"van", "von", "der", "den", "de", "da", "das", "do", "dos", "di", "du", "la",
             "le", "les", "ter", "ten", "het", "'t", "zu", "y", "e", "del", "della", "dei",
             "des", "op", "in", "af", "al", "el", "d'", "l'"}
IRISH_O = {"brien", "connor", "neill", "neil", "neal", "donnell", "connell", "hara", "keefe",
           "leary", "malley", "reilly", "rourke", "shea", "sullivan", "toole", "dell", "day",
           "dowd", "grady", "hare", "kane", "callaghan", "donovan", "driscoll", "mara",
           "meara", "halloran", "gorman", "flaherty", "farrell", "brian", "bannon", "doherty",
           "dwyer", "hagan", "hearn", "riley", "boyle", "bryant", "bryan", "connell", "quinn"}
SCRIPT_OF_LANG = {"bg": "CYRILLIC", "mk": "CYRILLIC", "el": "GREEK"}


def _script(ch: str) -> str:
    try:
        return unicodedata.name(ch).split()[0]
    except ValueError:
        return "?"


def normalise(s: str) -> str:
    s = unicodedata.normalize("NFC", str(s))
    s = " ".join(s.split())
    s = re.sub(r"(['’]) +", r"\1", s)
    return s


def fix_english(s: str) -> str:
    m = re.fullmatch(r"Mc([a-z])(.*)", s)
    if m:
        return "Mc" + m.group(1).upper() + m.group(2)
    m = re.fullmatch(r"O([a-z]+)", s)
    if m and m.group(1) in IRISH_O:
        return "O'" + m.group(1).capitalize()
    if s == "Dangelo":
        return "D'Angelo"
    return s


def fix_particles(s: str) -> str:
    """'Da silva' -> 'Da Silva': capitalise a lower-case word after a particle."""
    words = s.split(" ")
    if len(words) < 2:
        return s
    out = [words[0]]
    for w in words[1:]:
        if w and w[0].islower() and w.lower() not in PARTICLES:
            w = w[0].upper() + w[1:]
        out.append(w)
    return " ".join(out)


def reject_reason(s: str, kind: str, script: str, stop: set[str]) -> str | None:
    if not s:
        return "empty"
    tokens = s.split(" ")
    if kind == "given" and len(tokens) > 1:
        return "multi-word given name"
    for t in tokens:
        bare = t.strip(".").lower()
        if "." in t:
            return "abbreviation/initial"
        if bare in TITLES or bare in stop:
            return "title/prefix/suffix"
        if len(t) == 1 and t.isupper():
            return "initial"
    for ch in s:
        cat = unicodedata.category(ch)
        if cat[0] in "LM" or ch in "-'’" or (ch == " " and kind == "family"):
            continue
        return f"character {ch!r}"
    if re.search(r"(^[-'’])|([-'’]$)|(--)", s):
        return "stray punctuation"
    scripts = {_script(ch) for ch in s if unicodedata.category(ch)[0] == "L"}
    if scripts != {script}:
        return f"script {sorted(scripts)}"
    if kind == "given" and not s[0].isupper():
        return "not capitalised"
    if kind == "family" and not tokens[-1][:1].isupper() and not tokens[-1][:2] in ("d'", "l'"):
        return "not capitalised"
    for t in tokens:
        for i in range(1, len(t)):
            if t[i - 1].islower() and t[i].isupper() and t[:i] not in CAMEL_OK:
                return "run-together words"
    return None


def clean(names: Iterable[str], kind: str, script: str, stop: set[str], log: list[str],
          english: bool = False) -> list[str]:
    seen: dict[str, None] = {}
    for raw in names:
        s = normalise(raw)
        if s and s[0].islower() and " " not in s:  # 'тамара' -> 'Тамара', sl 'volk' -> 'Volk'
            s = s[0].upper() + s[1:]
        if kind == "family":
            s = fix_particles(s)
            if english:
                s = fix_english(s)
        why = reject_reason(s, kind, script, stop)
        if why:
            log.append(f"{kind} {raw!r}: {why}")
            continue
        seen.setdefault(s, None)
    return list(seen)


# --------------------------------------------------------------------------- #
# Female family-name rules
# --------------------------------------------------------------------------- #


def pl_female(name: str) -> str | None:
    """Female form of a Polish surname, or None if no safe form (adjectival -y/-i)."""
    for m_end in ("ski", "cki", "dzki"):
        if name.endswith(m_end):
            return name[:-1] + "a"
    if name.endswith(("y", "i")):
        return None
    return name


def bg_female(name: str) -> str:
    if name.endswith(("ски", "цки")):
        return name[:-1] + "а"
    if name.endswith(("ов", "ев", "ин")):
        return name + "а"
    return name


def mk_female(name: str) -> str:
    return bg_female(name)


def mk_male(name: str) -> str:
    if name.endswith(("ска", "цка")):
        return name[:-1] + "и"
    if name.endswith(("ова", "ева", "ина")):
        return name[:-1]
    return name


def lt_female(name: str) -> list[str]:
    """Married (-ienė) and maiden forms of a Lithuanian male surname."""
    rules = (("ius", "ienė", "iūtė"), ("us", "uvienė", "utė"), ("ys", "ienė", "ytė"),
             ("is", "ienė", "ytė"), ("as", "ienė", "aitė"), ("a", "ienė", "aitė"))
    for end, married, maiden in rules:
        if name.endswith(end):
            stem = name[: -len(end)]
            return [stem + married, stem + maiden]
    return []


IS_GENITIVE = {
    "Örn": "Arnar", "Hörður": "Harðar", "Hjörtur": "Hjartar", "Þórður": "Þórðar",
    "Hákon": "Hákonar", "Pétur": "Péturs", "Baldur": "Baldurs", "Artúr": "Artúrs",
    "Arthúr": "Arthúrs", "Njörður": "Njarðar", "Ögmundur": "Ögmundar", "Björn": "Björns",
    "Sturla": "Sturlu", "Kristófer": "Kristófers",
}


def is_genitive(name: str) -> str | None:
    if name in IS_GENITIVE:
        return IS_GENITIVE[name]
    low = name.lower()
    if any(c in low for c in "cqwz") or " " in name or "-" in name:
        return None
    if low.endswith("ir"):
        return name[:-1] + "s"
    if low.endswith("i"):
        return name[:-1] + "a"
    if low[-1] in "aeouy":
        return None
    if low.endswith("ur"):
        return name[:-2] + "s"
    if low.endswith("inn"):
        return name[:-1] + "s"
    if low.endswith("ll"):
        return name[:-1] + "s"
    if low.endswith(("s", "x")):
        return name
    return name + "s"


# --------------------------------------------------------------------------- #
# Pool builders: each returns (lists dict, source string)
# --------------------------------------------------------------------------- #

Lists = dict[str, list[str]]


def std_faker(locale: str) -> tuple[Lists, str]:
    """Faker first_names_male/female; last_names_male/female if present, else last_names."""
    male_f = faker_attr(locale, "last_names_male")
    female_f = faker_attr(locale, "last_names_female")
    neutral = faker_attr(locale, "last_names_nonbinary")
    if not (male_f and female_f):
        male_f = female_f = faker_attr(locale, "last_names")
    return ({"male_given": faker_attr(locale, "first_names_male"),
             "female_given": faker_attr(locale, "first_names_female"),
             "male_family": male_f + neutral, "female_family": female_f + neutral},
            faker_src(locale))


def merged_faker(locales: tuple[str, ...], note: str) -> tuple[Lists, str]:
    out: Lists = {k: [] for k in LISTS}
    for loc in locales:
        lists, _ = std_faker(loc)
        for k in LISTS:
            out[k] += lists[k]
    return out, f"{faker_src(*locales)} ({note})"


def curated_pool(locale: str) -> tuple[Lists, str]:
    d = curated(locale)
    fam = d.get("family_unisex", [])
    return ({"male_given": d.get("male_given", []), "female_given": d.get("female_given", []),
             "male_family": d.get("male_family", []) + fam,
             "female_family": d.get("female_family", []) + fam},
            curated_src(locale))


def pl_pool() -> tuple[Lists, str]:
    sup = curated("pl_PL")
    male = (faker_attr("pl_PL", "male_last_names") + faker_attr("pl_PL", "unisex_last_names")
            + sup.get("family_unisex", []))
    female = [f for f in (pl_female(n) for n in male) if f]
    return ({"male_given": faker_attr("pl_PL", "first_names_male") + sup["male_given"],
             "female_given": faker_attr("pl_PL", "first_names_female") + sup["female_given"],
             "male_family": male, "female_family": female},
            f"{faker_src('pl_PL')} + supplement {curated_src('pl_PL')} "
            "(female surnames derived: -ski/-cki/-dzki -> -ska/-cka/-dzka)")


def is_pool() -> tuple[Lists, str]:
    fathers = faker_attr("is_IS", "first_names_male")
    gens = [g for g in (is_genitive(n) for n in fathers) if g]
    return ({"male_given": fathers,
             "female_given": faker_attr("is_IS", "first_names_female"),
             "male_family": [g + "son" for g in gens],
             "female_family": [g + "dóttir" for g in gens]},
            faker_src("is_IS") + " (patronymics: father's given name in genitive + son/dóttir)")


def lt_pool() -> tuple[Lists, str]:
    d = curated("lt_LT")
    fk_given = faker_attr("lt_LT", "first_names")
    male_g = d["male_given"] + [n for n in fk_given if n.endswith("s")]
    female_g = d["female_given"] + [n for n in fk_given if n.endswith(("a", "ė"))]
    fk_family = [n for n in faker_attr("lt_LT", "last_names") if n != "Vsiliauskas"]  # typo
    male_f = d["male_family"] + fk_family
    female_f = [f for n in male_f for f in lt_female(n)]
    return ({"male_given": male_g, "female_given": female_g,
             "male_family": male_f, "female_family": female_f},
            f"{curated_src('lt_LT')} + {faker_src('lt_LT')} (given names split by ending; "
            "female surnames derived: -ienė married, -aitė/-ytė/-iūtė/-utė maiden)")


def bg_pool() -> tuple[Lists, str]:
    d = curated("bg_BG")
    male_f = d["male_family"]
    return ({"male_given": d["male_given"], "female_given": d["female_given"],
             "male_family": male_f, "female_family": [bg_female(n) for n in male_f]},
            f"{curated_src('bg_BG')} (Faker {FAKER_VERSION} bg_BG not used: unusual/joke "
            "names; female surnames derived -ов/-ев/-ин/-ски -> -ова/-ева/-ина/-ска)")


def tr_pool() -> tuple[Lists, str]:
    d = curated("tr_TR")
    fam = d["family_unisex"] + faker_attr("tr_TR", "last_names")
    return ({"male_given": d["male_given"], "female_given": d["female_given"],
             "male_family": fam, "female_family": fam},
            f"{curated_src('tr_TR')} (given names; Faker's tr_TR given names are rare names "
            f"lacking the common ones) + {faker_src('tr_TR')} (family names merged)")


def supplemented(lists: Lists, source: str, locale: str) -> tuple[Lists, str]:
    """Append a curated supplement (tools/name_sources/<locale>.json) to Faker lists."""
    d = curated(locale)
    fam = d.get("family_unisex", [])
    add = {"male_given": d.get("male_given", []), "female_given": d.get("female_given", []),
           "male_family": d.get("male_family", []) + fam,
           "female_family": d.get("female_family", []) + fam}
    return {k: lists[k] + add[k] for k in LISTS}, f"{source} + supplement {curated_src(locale)}"


def ro_pool() -> tuple[Lists, str]:
    return supplemented(*std_faker("ro_RO"), "ro_RO")


def mk_pool() -> tuple[Lists, str]:
    lists, src = std_faker("mk_MK")
    male = lists["male_family"] + [mk_male(n) for n in lists["female_family"]]
    female = lists["female_family"] + [mk_female(n) for n in lists["male_family"]]
    lists["male_family"], lists["female_family"] = male, female
    return lists, src + " (male/female surname lists completed from each other)"


def et_pool(part: str) -> tuple[Lists, str]:
    fam = faker_attr("et_EE", f"last_names_{part}")
    return ({"male_given": faker_attr("et_EE", f"first_names_male_{part}"),
             "female_given": faker_attr("et_EE", f"first_names_female_{part}"),
             "male_family": fam, "female_family": fam},
            faker_src("et_EE") + f" (*_{part} lists)")


def sv_fi_pool() -> tuple[Lists, str]:
    lists, src = std_faker("sv_SE")
    return lists, src + " (no sv_FI person provider in Faker; sv_SE stands in)"


@dataclass
class Pool:
    locale: str
    language: str
    weight: float
    build: Callable[[], tuple[Lists, str]]
    english: bool = False


def P(locale: str, language: str, weight: float = 1.0, build=None, english=False) -> Pool:
    return Pool(locale, language, weight, build or (lambda: std_faker(locale)), english)


NATIONS: dict[str, list[Pool]] = {
    "ALB": [P("sq_AL", "sq", build=lambda: curated_pool("sq_AL"))],
    "BEL": [P("nl_BE", "nl", 0.6), P("fr_BE", "fr", 0.4)],
    "BGR": [P("bg_BG", "bg", build=bg_pool)],
    "CAN": [P("en_CA", "en", 0.8, english=True, build=lambda: merged_faker(
                ("en_US", "en_GB"), "fallback, Faker has no en_CA person provider")),
            P("fr_CA", "fr", 0.2)],
    "HRV": [P("hr_HR", "hr")],
    "CZE": [P("cs_CZ", "cs")],
    "DNK": [P("da_DK", "da")],
    "EST": [P("et_EE", "et", 0.8, build=lambda: et_pool("est")),
            P("ru_EE", "ru", 0.2, build=lambda: et_pool("rus"))],
    "FIN": [P("fi_FI", "fi", 0.95), P("sv_FI", "sv", 0.05, build=sv_fi_pool)],
    "FRA": [P("fr_FR", "fr")],
    "DEU": [P("de_DE", "de")],
    "GRC": [P("el_GR", "el")],
    "HUN": [P("hu_HU", "hu")],
    "ISL": [P("is_IS", "is", build=is_pool)],
    "ITA": [P("it_IT", "it")],
    "LVA": [P("lv_LV", "lv")],
    "LTU": [P("lt_LT", "lt", build=lt_pool)],
    "LUX": [P("lb_LU", "lb", 0.5, build=lambda: curated_pool("lb_LU")), P("de_LU", "de", 0.5)],
    "MNE": [P("sr_Latn_ME", "sr", 0.95, build=lambda: curated_pool("sr_Latn_ME")),
            P("sq_ME", "sq", 0.05, build=lambda: curated_pool("sq_AL"))],
    "NLD": [P("nl_NL", "nl")],
    "MKD": [P("mk_MK", "mk", 0.8, build=mk_pool),
            P("sq_MK", "sq", 0.2, build=lambda: curated_pool("sq_AL"))],
    "NOR": [P("no_NO", "no")],
    "POL": [P("pl_PL", "pl", build=pl_pool)],
    "PRT": [P("pt_PT", "pt")],
    "ROU": [P("ro_RO", "ro", build=ro_pool)],
    "SVK": [P("sk_SK", "sk")],
    "SVN": [P("sl_SI", "sl")],
    "ESP": [P("es_ES", "es")],
    "SWE": [P("sv_SE", "sv")],
    "TUR": [P("tr_TR", "tr", build=tr_pool)],
    "GBR": [P("en_GB", "en")],
    "USA": [P("en_US", "en", english=True)],
    # partners (allow_partners)
    "AUS": [P("en_AU", "en", english=True, build=lambda: merged_faker(
                ("en_GB", "en_NZ"), "fallback, Faker has no en_AU person provider"))],
    "NZL": [P("en_NZ", "en")],
}


def faker_locales_of(pool: Pool, source: str) -> list[str]:
    return re.findall(r"faker\.providers\.person\.([A-Za-z_]+)", source)


def build_pool(pool: Pool, log: list[str]) -> dict:
    lists, source = pool.build()
    stop: set[str] = set()
    for loc in faker_locales_of(pool, source):
        stop |= faker_prefixes(loc)
    script = SCRIPT_OF_LANG.get(pool.language, "LATIN")
    out = {"locale": pool.locale, "language": pool.language, "weight": pool.weight,
           "source": source}
    for key in LISTS:
        kind = "given" if key.endswith("given") else "family"
        sub: list[str] = []
        out[key] = clean(lists[key], kind, script, stop, sub, english=pool.english)
        log += [f"{pool.locale} {key}: {m}" for m in sub]
        if not out[key]:
            raise SystemExit(f"{pool.locale}: empty {key}")
    return out


def dump(nation: str, pools: list[dict]) -> str:
    """Compact JSON: one line per pool header and per list."""
    d = lambda x: json.dumps(x, ensure_ascii=False)  # noqa: E731
    parts = []
    for p in pools:
        head = ", ".join(f"{d(k)}: {d(p[k])}" for k in ("locale", "language", "weight", "source"))
        body = ",\n  ".join(f"{d(k)}: {d(p[k])}" for k in LISTS)
        parts.append(f" {{{head},\n  {body}}}")
    text = f'{{"nation": {d(nation)}, "pools": [\n' + ",\n".join(parts) + "\n]}\n"
    assert json.loads(text) == {"nation": nation, "pools": pools}
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if stale")
    ap.add_argument("-v", "--verbose", action="store_true", help="list rejected entries")
    args = ap.parse_args(argv)
    if FAKER_VERSION != PINNED_FAKER:
        print(f"warning: Faker {FAKER_VERSION} installed, pools were designed for "
              f"{PINNED_FAKER}; review the output", file=sys.stderr)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stale = []
    print(f"{'nation':6} {'locale':11} {'w':>5} {'m_given':>7} {'f_given':>7} "
          f"{'m_family':>8} {'f_family':>8}  rejected")
    for nation, specs in NATIONS.items():
        total = sum(s.weight for s in specs)
        assert abs(total - 1.0) < 1e-9, (nation, total)
        pools, log = [], []
        for spec in specs:
            before = len(log)
            p = build_pool(spec, log)
            pools.append(p)
            print(f"{nation:6} {p['locale']:11} {p['weight']:5.2f} "
                  + " ".join(f"{len(p[k]):>{7 if 'given' in k else 8}}" for k in LISTS)
                  + f"  {len(log) - before}")
        if args.verbose:
            for line in log:
                print(f"    {line}")
        text = dump(nation, pools)
        path = OUT_DIR / f"{nation}.json"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(nation)
        else:
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"stale or missing: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
