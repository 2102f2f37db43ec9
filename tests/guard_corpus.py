# ruff: noqa: RUF001  # the corpus is made of look-alike characters on purpose
"""The redaction corpus: what the built-in detectors must find, what they must leave alone,
and what they are known to miss. ``test_guards.py`` runs every case through a router
and checks the detection numbers the README states.

A positive is ``(text, value)``: ``value`` (as written in ``text``) must not reach the
provider. ``MISSES`` are positives out of reach by design (homoglyphs and spelled-out
values: deliberate evasion), kept here so the numbers count them.
"""

from __future__ import annotations

NBSP, NNBSP, ZWSP, ZWJ, SHY, WJ = "\u00a0", "\u202f", "\u200b", "\u200d", "\u00ad", "\u2060"
HYPHEN, NBHYPHEN, FIGURE_DASH, EN_DASH, MINUS = "\u2010", "\u2011", "\u2012", "\u2013", "\u2212"

POSITIVES: list[tuple[str, str]] = [
    # emails
    ("mail jane.doe@example.com today", "jane.doe@example.com"),
    ("to Jane.Doe+tag@mail.example.co.uk, thanks", "Jane.Doe+tag@mail.example.co.uk"),
    ("escríbeme: josé.garcía@ejemplo.es", "josé.garcía@ejemplo.es"),
    ("IDN: kontakt@bücher.de", "kontakt@bücher.de"),
    ("punycode kontakt@xn--bcher-kva.de", "kontakt@xn--bcher-kva.de"),
    ("邮箱 用户@例子.广告 谢谢", "用户@例子.广告"),
    ("почта: иван@пример.рф", "иван@пример.рф"),
    ("メールはjane@example.comです", "jane@example.com"),
    ("spaced jane.doe @ example.com here", "jane.doe @ example.com"),
    ("broken jane.doe@\nexample.com line", "jane.doe@\nexample.com"),
    ("broken jane.doe\n@example.com line", "jane.doe\n@example.com"),
    (f"zero width jane{ZWSP}.doe@exam{ZWJ}ple.com", f"jane{ZWSP}.doe@exam{ZWJ}ple.com"),
    (f"soft hyphen jane.doe@exam{SHY}ple.com", f"jane.doe@exam{SHY}ple.com"),
    ("full width ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", "ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ"),
    ("small at jane﹫example.com", "jane﹫example.com"),
    ("decomposed jose\u0301@example.com", "jose\u0301@example.com"),
    ("cyrillic a j\u0430ne@example.com", "j\u0430ne@example.com"),
    # cards (Luhn-valid test numbers)
    ("card 4111111111111111", "4111111111111111"),
    ("card 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("card 5500-0055-5555-5559", "5500-0055-5555-5559"),
    ("amex 3782 822463 10005", "3782 822463 10005"),
    (f"card 4111{NBSP}1111{NBSP}1111{NBSP}1111", f"4111{NBSP}1111{NBSP}1111{NBSP}1111"),
    (f"card 4111{NNBSP}1111{NNBSP}1111{NNBSP}1111", f"4111{NNBSP}1111{NNBSP}1111{NNBSP}1111"),
    ("card 4111.1111.1111.1111 ok", "4111.1111.1111.1111"),
    ("card 4111/1111/1111/1111 ok", "4111/1111/1111/1111"),
    (f"card 4111{ZWSP}1111{ZWSP}1111{ZWSP}1111", f"4111{ZWSP}1111{ZWSP}1111{ZWSP}1111"),
    (f"card 41{WJ}11 1111 1111 1111", f"41{WJ}11 1111 1111 1111"),
    ("card ４１１１ １１１１ １１１１ １１１１", "４１１１ １１１１ １１１１ １１１１"),
    ("card ٤١١١١١١١١١١١١١١١", "٤١١١١١١١١١١١١١١١"),
    ("card 4111 1111 1111 1111 12/27", "4111 1111 1111 1111"),
    (f"card 4111{HYPHEN}1111{HYPHEN}1111{HYPHEN}1111", f"4111{HYPHEN}1111{HYPHEN}1111{HYPHEN}1111"),
    (f"card 4111{NBHYPHEN}1111{NBHYPHEN}1111{NBHYPHEN}1111", f"4111{NBHYPHEN}1111{NBHYPHEN}1111{NBHYPHEN}1111"),
    (
        f"card 5500{FIGURE_DASH}0055{FIGURE_DASH}5555{FIGURE_DASH}5559",
        f"5500{FIGURE_DASH}0055{FIGURE_DASH}5555{FIGURE_DASH}5559",
    ),
    (f"card 5500{EN_DASH}0055{EN_DASH}5555{EN_DASH}5559", f"5500{EN_DASH}0055{EN_DASH}5555{EN_DASH}5559"),
    (f"card 4111{MINUS}1111{MINUS}1111{MINUS}1111", f"4111{MINUS}1111{MINUS}1111{MINUS}1111"),
    # phones
    ("call +14155552671", "+14155552671"),
    ("call (555) 123-4567", "(555) 123-4567"),
    ("ruf 06 12 34 56 78 an", "06 12 34 56 78"),
    ("ruf 06.12.34.56.78 an", "06.12.34.56.78"),
    (f"tel +49{NBSP}151{NBSP}1234{NBSP}5678", f"+49{NBSP}151{NBSP}1234{NBSP}5678"),
    ("Tel. 030/12345678", "030/12345678"),
    ("tel ＋１ ４１５ ５５５ ２６７１", "＋１ ４１５ ５５５ ２６７１"),
    (f"tel +1 415{ZWSP} 555 2671", f"+1 415{ZWSP} 555 2671"),
    (f"call (555) 123{EN_DASH}4567", f"(555) 123{EN_DASH}4567"),
]

MISSES: list[tuple[str, str]] = [
    ("jane dot doe at example dot com", "jane dot doe at example dot com"),  # spelled out
    ("jane.doe(at)example.com", "jane.doe(at)example.com"),  # obfuscated @
    ("jane.doe@example。com", "jane.doe@example。com"),  # ideographic full stop for the dot
    ("card 4lll llll llll llll", "4lll llll llll llll"),  # letter l for digit 1
    ("card 4111 IIII IIII IIII", "4111 IIII IIII IIII"),  # letter I for digit 1
    ("four one one one, one one one one, one one one one, one one one one", "four one one one"),  # words
]

NEGATIVES: list[str] = [
    "order 123456789012 shipped",  # a bare digit run without +
    "on 2025-01-31 at 10:30",
    "from 192.168.100.200",
    "version 1.2.3.4 and 10.0.0.1",
    "ext 555-1234",
    "price 1.234.567,89 EUR",
    "dates 01/02/2025 and 12/31/2024",
    "ratio 3/4 of 1/2",
    "write @handle or a@b",
    "user@localhost is a local mailbox",
    "decorators like @property.setter",
    "the card ends in 1111",
    "4111 1111 1111 1112 fails Luhn",
    "tracking 1Z999AA10123456784",
    "größe 42 café naïve Ωmega",
    "数字 123 和 文本",
    f"a{NBSP}non-breaking{NBSP}space",
    f"zero{ZWSP}width{ZWJ}joiners",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ",
    "x = a @ b.T",
    f"years 2019{EN_DASH}2021, pages 123{EN_DASH}456, {MINUS}40 °C, ext 555{EN_DASH}1234",
    "メールは後で送ります",
]
