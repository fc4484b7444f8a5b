# ruff: noqa: E501 — translations read better unbroken
"""The unsubscribe pages' words in English, Romanian and Estonian.

Small string tables rather than a gettext catalogue: three short pages, and a
translator can read and fix them in one screen. A contact's locale picks the table
(``ro-RO`` → ``ro``); anything else falls back to the shop's default locale, then English.
"""

from __future__ import annotations

from collections.abc import Collection

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Email preferences",
        "lead": "Choose what {shop} may send to {email}.",
        "one_click": "Unsubscribe",
        "save": "Save my choices",
        "hint": "Tick what you no longer want to receive. Messages about your own orders still reach you.",
        "done_title": "You are unsubscribed",
        "done_body": "{shop} will not send you these messages any more. It takes effect immediately.",
        "already": "Nothing left to unsubscribe from: you receive no marketing from {shop}.",
        "invalid_title": "This link is not valid",
        "invalid_body": "The unsubscribe link is damaged or incomplete. Please use the link from the latest message.",
        "channel.email": "Marketing emails (offers, news, reminders)",
        "channel.x": "Mentions on X",
        "channel.sms": "Marketing text messages",
    },
    "ro": {
        "title": "Preferințe de email",
        "lead": "Alegeți ce vă poate trimite {shop} la {email}.",
        "one_click": "Dezabonare",
        "save": "Salvează opțiunile",
        "hint": "Bifați ce nu mai doriți să primiți. Mesajele despre comenzile dumneavoastră vor ajunge în continuare.",
        "done_title": "V-ați dezabonat",
        "done_body": "{shop} nu vă va mai trimite aceste mesaje. Modificarea are efect imediat.",
        "already": "Nu mai există nimic de la care să vă dezabonați: nu primiți mesaje de marketing de la {shop}.",
        "invalid_title": "Acest link nu este valid",
        "invalid_body": "Linkul de dezabonare este deteriorat sau incomplet. Folosiți linkul din cel mai recent mesaj.",
        "channel.email": "Emailuri de marketing (oferte, noutăți, mementouri)",
        "channel.x": "Mențiuni pe X",
        "channel.sms": "Mesaje text de marketing",
    },
    "et": {
        "title": "E-kirjade eelistused",
        "lead": "Valige, mida {shop} võib saata aadressile {email}.",
        "one_click": "Loobu tellimusest",
        "save": "Salvesta valikud",
        "hint": "Märkige, mida te enam saada ei soovi. Teie tellimuste kohta käivad teated jõuavad teieni endiselt.",
        "done_title": "Olete tellimusest loobunud",
        "done_body": "{shop} ei saada teile enam neid sõnumeid. Muudatus kehtib kohe.",
        "already": "Pole enam midagi, millest loobuda: te ei saa {shop} turunduskirju.",
        "invalid_title": "See link ei kehti",
        "invalid_body": "Loobumislink on vigane või poolik. Kasutage viimase kirja linki.",
        "channel.email": "Turunduskirjad (pakkumised, uudised, meeldetuletused)",
        "channel.x": "Mainimised X-is",
        "channel.sms": "Turunduslikud tekstisõnumid",
    },
}


def pick_language(locale: str | None, default_locale: str, available: Collection[str] = TEXT.keys()) -> str:
    """The first of ``locale``'s language, the default locale's, English, found in ``available``."""
    for candidate in (locale, default_locale):
        if candidate:
            language = candidate.replace("_", "-").split("-")[0].lower()
            if language in available:
                return language
    return "en"


def strings(language: str) -> dict[str, str]:
    return TEXT.get(language, TEXT["en"])
