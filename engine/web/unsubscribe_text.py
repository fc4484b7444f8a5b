# ruff: noqa: E501 — translations read better unbroken
"""The unsubscribe and preferences pages' words in English, Romanian and Estonian.

Small string tables rather than a gettext catalogue: three short pages, and a
translator can read and fix them in one screen. A contact's locale picks the table
(``ro-RO`` → ``ro``); anything else falls back to the shop's default locale, then English.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date

from babel.dates import format_date

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
        "topics_heading": "Topics",
        "topics_hint": "Tick the topics you no longer want to hear about; you keep the others.",
        "pause_heading": "Take a break",
        "pause_hint": "No offers or news during a pause; messages about your own orders still arrive.",
        "pause_none": "No pause",
        "pause_through": "Pause through {date}",
        "paused_now": "Paused: no offers or news through {date}.",
        "channels_heading": "Channels",
        "everything": "Or stop everything:",
        "saved_title": "Your choices are saved",
        "left_topic": "No longer: {label}",
        "rejoined_topic": "Back again: {label}",
        "pause_ended": "Your pause has ended: offers and news reach you again.",
        "nothing_changed": "Nothing changed.",
        "invalid_choice": "That choice is not on offer. Please go back and choose again.",
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
        "topics_heading": "Subiecte",
        "topics_hint": "Bifați subiectele despre care nu mai doriți să primiți mesaje; le păstrați pe celelalte.",
        "pause_heading": "Luați o pauză",
        "pause_hint": "În timpul pauzei nu primiți oferte sau noutăți; mesajele despre comenzile dumneavoastră sosesc în continuare.",
        "pause_none": "Fără pauză",
        "pause_through": "Pauză până la {date} inclusiv",
        "paused_now": "În pauză: fără oferte sau noutăți până la {date} inclusiv.",
        "channels_heading": "Canale",
        "everything": "Sau renunțați la tot:",
        "saved_title": "Opțiunile au fost salvate",
        "left_topic": "Nu mai primiți: {label}",
        "rejoined_topic": "Primiți din nou: {label}",
        "pause_ended": "Pauza s-a încheiat: primiți din nou oferte și noutăți.",
        "nothing_changed": "Nu s-a schimbat nimic.",
        "invalid_choice": "Această opțiune nu este disponibilă. Reveniți și alegeți din nou.",
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
        "topics_heading": "Teemad",
        "topics_hint": "Märkige teemad, millest te enam kuulda ei soovi; ülejäänud jäävad alles.",
        "pause_heading": "Võtke paus",
        "pause_hint": "Pausi ajal pakkumisi ega uudiseid ei saadeta; teie tellimuste teated jõuavad teieni endiselt.",
        "pause_none": "Ilma pausita",
        "pause_through": "Paus, viimane pausipäev: {date}",
        "paused_now": "Pausil: pakkumisi ega uudiseid ei saadeta. Viimane pausipäev: {date}.",
        "channels_heading": "Kanalid",
        "everything": "Või loobuge kõigest:",
        "saved_title": "Teie valikud on salvestatud",
        "left_topic": "Enam ei saadeta: {label}",
        "rejoined_topic": "Taas saadetakse: {label}",
        "pause_ended": "Paus on lõppenud: pakkumised ja uudised jõuavad teieni taas.",
        "nothing_changed": "Midagi ei muutunud.",
        "invalid_choice": "Sellist valikut ei pakuta. Minge tagasi ja valige uuesti.",
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


def long_date(day: date, language: str) -> str:
    """A day as the language writes it in a sentence: "January 6, 2027", "6 ianuarie 2027", "6. jaanuar 2027".

    Estonian and Romanian phrases above put the date where the nominative reads right
    ("Viimane pausipäev: 6. jaanuar 2027"), never after "kuni", which would need another case.
    """
    return format_date(day, format="long", locale=language)
