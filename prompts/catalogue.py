"""Every spoken prompt: NAME → text in Finnish, Swedish and English.

A plain data table. Each name becomes `<sounds_dir>/<lang>/<name>.wav`; an operator may replace
any of them with a recording (see `prompts.build`). Every name has a text in all three languages,
so a missing file can always fall back to another language. Some pieces exist only because one
language needs them (Finnish case forms, the English "a.m."); their other texts mean the same.

Numbers are written out in words, never as digits: espeak-ng would otherwise pick its own
reading ("1" as "yksi" or "ensimmäinen", "ett" or "en").
"""

from __future__ import annotations

LANGUAGES = ("fi", "sv", "en")
DEFAULT_LANGUAGE = "fi"

# Tones are generated, not spoken: name → (frequency Hz, seconds).
TONES: dict[str, tuple[int, float]] = {
    "beep": (1000, 0.25),
}

# name: (Finnish, Swedish, English)
PROMPTS: dict[str, tuple[str, str, str]] = {
    # --- voicemail: login -------------------------------------------------------------------
    "vm-welcome": ("Tervetuloa puhepostiin.", "Välkommen till röstbrevlådan.", "Welcome to voicemail."),
    "vm-enter-mailbox": (
        "Näppäile postilaatikon numero ja paina risuaita.",
        "Slå brevlådans nummer och avsluta med fyrkant.",
        "Please enter your mailbox number, followed by the hash key.",
    ),
    "vm-enter-pin": (
        "Näppäile tunnusluku ja paina risuaita.",
        "Slå din PIN-kod och avsluta med fyrkant.",
        "Please enter your PIN, followed by the hash key.",
    ),
    "vm-pin-wrong": (
        "Postilaatikon numero tai tunnusluku on väärä.",
        "Fel brevlådenummer eller PIN-kod.",
        "The mailbox number or PIN is incorrect.",
    ),
    "vm-locked": (
        "Postilaatikko on lukittu liian monen väärän yrityksen vuoksi. Yritä myöhemmin uudelleen.",
        "Brevlådan är låst efter för många felaktiga försök. Försök igen senare.",
        "This mailbox is locked after too many wrong attempts. Please try again later.",
    ),
    # --- voicemail: message count ("Sinulla on" + "yksi uusi viesti" | N + "uutta viestiä") -
    "vm-you-have": ("Sinulla on", "Du har", "You have"),
    "vm-new-1": ("yksi uusi viesti", "ett nytt meddelande", "one new message"),
    "vm-new-n": ("uutta viestiä", "nya meddelanden", "new messages"),
    "vm-old-1": ("yksi vanha viesti", "ett gammalt meddelande", "one old message"),
    "vm-old-n": ("vanhaa viestiä", "gamla meddelanden", "old messages"),
    "vm-no-messages": ("Sinulla ei ole viestejä.", "Du har inga meddelanden.", "You have no messages."),
    "vm-no-new-messages": ("Ei uusia viestejä.", "Inga nya meddelanden.", "No new messages."),
    "vm-no-old-messages": ("Ei vanhoja viestejä.", "Inga gamla meddelanden.", "No old messages."),
    # --- voicemail: menus (keys as in SPEC) ------------------------------------------------
    "vm-main-menu": (
        (
            "Kuuntele uudet viestit, paina yksi. Kuuntele vanhat viestit, paina kaksi. "
            "Toista oma tervehdys, paina neljä. Tallenna oma tervehdys, paina viisi. "
            "Poista oma tervehdys, paina kuusi. Lopeta puhelu, paina tähti. "
            "Toista tämä valikko, paina nolla."
        ),
        (
            "Nya meddelanden, tryck ett. Gamla meddelanden, tryck två. "
            "Lyssna på din hälsning, tryck fyra. Spela in en ny hälsning, tryck fem. "
            "Radera din hälsning, tryck sex. Avsluta samtalet, tryck stjärna. "
            "Upprepa menyn, tryck noll."
        ),
        (
            "For new messages, press one. For old messages, press two. "
            "To hear your greeting, press four. To record a new greeting, press five. "
            "To delete your greeting, press six. To end the call, press star. "
            "To repeat this menu, press zero."
        ),
    ),
    "vm-message-menu": (
        (
            "Edellinen viesti, paina yksi. Toista viesti uudelleen, paina kaksi. "
            "Seuraava viesti, paina kolme. Poista viesti, paina seitsemän. "
            "Lopeta puhelu, paina tähti. Päävalikkoon, paina nolla."
        ),
        (
            "Föregående meddelande, tryck ett. Lyssna igen, tryck två. "
            "Nästa meddelande, tryck tre. Radera meddelandet, tryck sju. "
            "Avsluta samtalet, tryck stjärna. Huvudmenyn, tryck noll."
        ),
        (
            "For the previous message, press one. To replay this message, press two. "
            "For the next message, press three. To delete this message, press seven. "
            "To end the call, press star. For the main menu, press zero."
        ),
    ),
    "vm-invalid-key": ("Virheellinen valinta.", "Ogiltigt val.", "That key is not valid."),
    "vm-goodbye": ("Näkemiin.", "Hej då.", "Goodbye."),
    # --- voicemail: playing messages -------------------------------------------------------
    "vm-message-from": ("Viesti numerosta", "Meddelande från nummer", "Message from number"),
    "vm-unknown-caller": (
        "Viesti tuntemattomasta numerosta",
        "Meddelande från okänt nummer",
        "Message from an unknown number",
    ),
    "vm-received-at": ("vastaanotettu", "mottaget", "received"),
    "vm-deleted": ("Viesti poistettu.", "Meddelandet är raderat.", "Message deleted."),
    "vm-no-more-messages": ("Ei enempää viestejä.", "Inga fler meddelanden.", "No more messages."),
    "vm-first-message": (
        "Tämä on ensimmäinen viesti.",
        "Det här är det första meddelandet.",
        "This is the first message.",
    ),
    # --- voicemail: own greeting -----------------------------------------------------------
    "vm-greeting-record-after-beep": (
        "Nauhoita tervehdyksesi äänimerkin jälkeen. Lopeta painamalla risuaitaa.",
        "Spela in din hälsning efter tonen. Avsluta med fyrkant.",
        "Record your greeting after the tone. Press the hash key when you are done.",
    ),
    "vm-greeting-saved": ("Tervehdys tallennettu.", "Hälsningen är sparad.", "Your greeting has been saved."),
    "vm-greeting-too-short": (
        "Tervehdys jäi liian lyhyeksi, eikä sitä tallennettu.",
        "Hälsningen blev för kort och sparades inte.",
        "The greeting was too short and was not saved.",
    ),
    "vm-greeting-deleted": (
        "Oma tervehdys poistettu. Käytössä on nyt vakiotervehdys.",
        "Din hälsning är raderad. Standardhälsningen används nu.",
        "Your greeting has been deleted. The standard greeting is now in use.",
    ),
    "vm-no-greeting": (
        "Sinulla ei ole omaa tervehdystä. Käytössä on vakiotervehdys.",
        "Du har ingen egen hälsning. Standardhälsningen används.",
        "You have no personal greeting. The standard greeting is in use.",
    ),
    # --- voicemail: callers leaving a message ----------------------------------------------
    # The default greeting: "-pre" + the number, digit by digit, + "-post".
    "vm-default-greeting-pre": ("Tavoittelemasi numero", "Abonnenten på nummer", "The subscriber at number"),
    "vm-default-greeting-post": (
        "ei juuri nyt vastaa. Jätä viesti äänimerkin jälkeen.",
        "kan inte svara just nu. Lämna ett meddelande efter tonen.",
        "is not available. Please leave a message after the tone.",
    ),
    "vm-press-1-customer-service": (
        "Jos haluat, että puhelusi yhdistetään asiakaspalveluun, paina yksi.",
        "Tryck ett för att kopplas till kundtjänst.",
        "Press one to be connected to customer service.",
    ),
    "vm-connecting": ("Puhelusi yhdistetään.", "Ditt samtal kopplas.", "Connecting your call."),
    "vm-message-saved": (
        "Viestisi on tallennettu. Kiitos.",
        "Ditt meddelande är sparat. Tack.",
        "Your message has been saved. Thank you.",
    ),
    "vm-message-not-saved": (
        "Valitettavasti viestiäsi ei voitu tallentaa. Yritä myöhemmin uudelleen. Näkemiin.",
        "Tyvärr kunde ditt meddelande inte sparas. Försök igen senare. Hej då.",
        "We are sorry, your message could not be saved. Please try again later. Goodbye.",
    ),
    "vm-unknown-number-apology": (
        "Valitettavasti tähän numeroon ei voi jättää viestiä. Näkemiin.",
        "Tyvärr går det inte att lämna meddelande till det här numret. Hej då.",
        "We are sorry, no message can be left for this number. Goodbye.",
    ),
    # --- feature codes ---------------------------------------------------------------------
    "fc-forward-set": ("Puhelut siirretään numeroon", "Samtalen kopplas vidare till nummer", "Calls are forwarded to number"),
    "fc-forward-removed": ("Soitonsiirto on poistettu.", "Vidarekopplingen är borttagen.", "Call forwarding has been removed."),
    "fc-refused": ("Toimintoa ei voitu suorittaa.", "Det gick inte att utföra.", "That could not be done."),
    "fc-refused-voicemail-number": (
        "Puheluja ei voi siirtää puhepostin kuuntelunumeroon.",
        "Det går inte att koppla vidare till röstbrevlådans nummer.",
        "Calls cannot be forwarded to the voicemail access number.",
    ),
    "fc-refused-own-number": (
        "Puheluja ei voi siirtää omaan numeroosi.",
        "Det går inte att koppla vidare till ditt eget nummer.",
        "Calls cannot be forwarded to your own number.",
    ),
    "fc-refused-invalid-number": (
        "Numero on virheellinen.",
        "Numret är ogiltigt.",
        "That number is not valid.",
    ),
    "fc-refused-loop": (
        "Siirto palauttaisi puhelut takaisin sinulle.",
        "Vidarekopplingen skulle skicka samtalen tillbaka till dig.",
        "That forward would send calls back to you.",
    ),
    "fc-refused-not-allowed": (
        "Sinulla ei ole oikeutta tähän toimintoon.",
        "Du har inte behörighet till den här tjänsten.",
        "You are not allowed to use this service.",
    ),
    "fc-refused-activity-number": (
        "Puheluja ei voi siirtää tilanvaihtonumeroon.",
        "Det går inte att koppla vidare till numret för statusbyte.",
        "Calls cannot be forwarded to the activity-change number.",
    ),
    "fc-refused-number-barred": (
        "Puheluja ei voi siirtää tähän numeroon.",
        "Det går inte att koppla samtal till det här numret.",
        "Calls cannot be forwarded to this number.",
    ),
    "xfer-refused": (
        "Puhelua ei voitu siirtää tähän numeroon. Näkemiin.",
        "Samtalet kunde inte kopplas till det numret. Hej då.",
        "The call could not be transferred to that number. Goodbye.",
    ),
    # --- the outbound check: a call that may not go out ------------------------------------
    "out-refused-barred": (
        "Tähän numeroon ei voi soittaa tästä liittymästä.",
        "Det går inte att ringa det här numret härifrån.",
        "This number cannot be called from here.",
    ),
    "out-refused-limit": (
        "Puhelua ei voida nyt yhdistää, koska puheluita on liikaa. Yritä myöhemmin uudelleen.",
        "Samtalet kan inte kopplas nu, det pågår för många samtal. Försök igen senare.",
        "The call cannot be connected now: there are too many calls. Please try again later.",
    ),
    "out-refused-error": (
        "Teknisen häiriön vuoksi puhelua ei voitu yhdistää. Yritä myöhemmin uudelleen.",
        "På grund av ett tekniskt fel kunde samtalet inte kopplas. Försök igen senare.",
        "Because of a technical problem the call could not be connected. Please try again later.",
    ),
    # --- call recording: what both parties hear before a recorded call connects ------------
    "record-notice": (
        "Tämä puhelu nauhoitetaan.",
        "Det här samtalet spelas in.",
        "This call is being recorded.",
    ),
    "fc-refused-error": (
        "Teknisen häiriön vuoksi toimintoa ei voitu suorittaa. Yritä myöhemmin uudelleen.",
        "På grund av ett tekniskt fel gick det inte att utföra. Försök igen senare.",
        "Because of a technical problem this could not be done. Please try again later.",
    ),
    "cw-on": ("Koputus on otettu käyttöön.", "Samtal väntar är aktiverat.", "Call waiting is now on."),
    "cw-off": ("Koputus on poistettu käytöstä.", "Samtal väntar är avaktiverat.", "Call waiting is now off."),
    "cw-is-on": ("Koputus on käytössä.", "Samtal väntar är på.", "Call waiting is on."),
    "cw-is-off": ("Koputus ei ole käytössä.", "Samtal väntar är av.", "Call waiting is off."),
    # --- activity (presence) ---------------------------------------------------------------
    # Names, as heard in the activity menu: "act-<key>".
    "act-available": ("Tavoitettavissa", "Tillgänglig", "Available"),
    "act-busy": ("Varattu", "Upptagen", "Busy"),
    "act-meeting": ("Kokouksessa", "På möte", "In a meeting"),
    "act-lunch": ("Lounaalla", "Lunch", "Lunch"),
    "act-off-work": ("Vapaalla", "Ledig", "Off work"),
    "act-vacation": ("Lomalla", "Semester", "Vacation"),
    "act-sick": ("Sairaana", "Sjuk", "Sick"),
    # The greeting's sentence: "act-person-is" + "act-is-<key>" [+ until phrase].
    "act-person-is": ("Tavoittelemasi henkilö on", "Personen du söker är", "The person you are calling is"),
    "act-is-available": ("tavoitettavissa", "tillgänglig", "available"),
    "act-is-busy": ("kiireinen", "upptagen", "busy"),
    "act-is-meeting": ("kokouksessa", "på möte", "in a meeting"),
    "act-is-lunch": ("lounaalla", "på lunch", "at lunch"),
    "act-is-off-work": ("vapaalla", "ledig", "off work"),
    "act-is-vacation": ("lomalla", "på semester", "on vacation"),
    "act-is-sick": ("sairaana", "sjuk", "off sick"),
    "act-current-is": ("Nykyinen aktiviteettisi on", "Din aktivitet är", "Your current activity is"),
    "act-choose": ("Valitse uusi aktiviteetti.", "Välj en ny aktivitet.", "Choose a new activity."),
    "act-changed": ("Aktiviteetti vaihdettu.", "Aktiviteten är ändrad.", "Your activity has been changed."),
    "act-menu-tail": (
        "Kuuntele valikko uudelleen painamalla nolla. Lopeta painamalla tähteä.",
        "Tryck noll för att höra menyn igen. Tryck stjärna för att avsluta.",
        "To hear this again press zero. To end press star.",
    ),
    "act-enter-until": (
        "Anna päättymisaika tunteina ja minuutteina, esimerkiksi yksi kuusi kolme nolla, tai päivien määrä, "
        "ja paina risuaitaa. Ilman päättymisaikaa paina pelkkää risuaitaa.",
        "Ange sluttiden i timmar och minuter, till exempel ett sex tre noll, eller antalet dagar, "
        "och tryck fyrkant. Utan sluttid, tryck bara fyrkant.",
        "Enter the end time as hours and minutes, for example one six three zero, or a number of days, "
        "then press hash. For no end time, press hash only.",
    ),
    "act-invalid-time": ("Aika ei kelpaa.", "Tiden är ogiltig.", "That time is not valid."),
    "act-enter-number": (
        "Anna puhelinnumerosi ja paina risuaitaa.",
        "Ange ditt telefonnummer och tryck fyrkant.",
        "Enter your phone number, then press hash.",
    ),
    # --- small words for composed sentences ------------------------------------------------
    "and": ("ja", "och", "and"),
    "press": ("paina", "tryck", "press"),
    "plus": ("plus", "plus", "plus"),
    "star": ("tähti", "stjärna", "star"),
    "hash": ("risuaita", "fyrkant", "hash"),
    "today": ("tänään", "i dag", "today"),
    "yesterday": ("eilen", "i går", "yesterday"),
    "at": ("kello", "klockan", "at"),  # before a time of day
    "until": ("asti", "till", "until"),  # Finnish puts it last: "perjantaihin asti"
    "until-tomorrow": ("huomiseen", "i morgon", "tomorrow"),  # after/before "until"
    "time-oh": ("nolla", "noll", "oh"),  # "two oh five"
    "time-am": ("aamupäivällä", "på förmiddagen", "a.m."),
    "time-pm": ("iltapäivällä", "på eftermiddagen", "p.m."),
    # --- digits (phone numbers, read one by one) -------------------------------------------
    "digit-0": ("nolla", "noll", "zero"),
    "digit-1": ("yksi", "ett", "one"),
    "digit-2": ("kaksi", "två", "two"),
    "digit-3": ("kolme", "tre", "three"),
    "digit-4": ("neljä", "fyra", "four"),
    "digit-5": ("viisi", "fem", "five"),
    "digit-6": ("kuusi", "sex", "six"),
    "digit-7": ("seitsemän", "sju", "seven"),
    "digit-8": ("kahdeksan", "åtta", "eight"),
    "digit-9": ("yhdeksän", "nio", "nine"),
    # --- numbers: 0-20, tens, hundreds, thousands; the rest is composed --------------------
    "num-0": ("nolla", "noll", "zero"),
    "num-1": ("yksi", "ett", "one"),
    "num-2": ("kaksi", "två", "two"),
    "num-3": ("kolme", "tre", "three"),
    "num-4": ("neljä", "fyra", "four"),
    "num-5": ("viisi", "fem", "five"),
    "num-6": ("kuusi", "sex", "six"),
    "num-7": ("seitsemän", "sju", "seven"),
    "num-8": ("kahdeksan", "åtta", "eight"),
    "num-9": ("yhdeksän", "nio", "nine"),
    "num-10": ("kymmenen", "tio", "ten"),
    "num-11": ("yksitoista", "elva", "eleven"),
    "num-12": ("kaksitoista", "tolv", "twelve"),
    "num-13": ("kolmetoista", "tretton", "thirteen"),
    "num-14": ("neljätoista", "fjorton", "fourteen"),
    "num-15": ("viisitoista", "femton", "fifteen"),
    "num-16": ("kuusitoista", "sexton", "sixteen"),
    "num-17": ("seitsemäntoista", "sjutton", "seventeen"),
    "num-18": ("kahdeksantoista", "arton", "eighteen"),
    "num-19": ("yhdeksäntoista", "nitton", "nineteen"),
    "num-20": ("kaksikymmentä", "tjugo", "twenty"),
    "num-30": ("kolmekymmentä", "trettio", "thirty"),
    "num-40": ("neljäkymmentä", "fyrtio", "forty"),
    "num-50": ("viisikymmentä", "femtio", "fifty"),
    "num-60": ("kuusikymmentä", "sextio", "sixty"),
    "num-70": ("seitsemänkymmentä", "sjuttio", "seventy"),
    "num-80": ("kahdeksankymmentä", "åttio", "eighty"),
    "num-90": ("yhdeksänkymmentä", "nittio", "ninety"),
    "num-100": ("sata", "hundra", "one hundred"),
    "num-200": ("kaksisataa", "tvåhundra", "two hundred"),
    "num-300": ("kolmesataa", "trehundra", "three hundred"),
    "num-400": ("neljäsataa", "fyrahundra", "four hundred"),
    "num-500": ("viisisataa", "femhundra", "five hundred"),
    "num-600": ("kuusisataa", "sexhundra", "six hundred"),
    "num-700": ("seitsemänsataa", "sjuhundra", "seven hundred"),
    "num-800": ("kahdeksansataa", "åttahundra", "eight hundred"),
    "num-900": ("yhdeksänsataa", "niohundra", "nine hundred"),
    "num-1000": ("tuhat", "tusen", "one thousand"),
    "num-2000": ("kaksituhatta", "tvåtusen", "two thousand"),
    "num-3000": ("kolmetuhatta", "tretusen", "three thousand"),
    "num-4000": ("neljätuhatta", "fyratusen", "four thousand"),
    "num-5000": ("viisituhatta", "femtusen", "five thousand"),
    "num-6000": ("kuusituhatta", "sextusen", "six thousand"),
    "num-7000": ("seitsemäntuhatta", "sjutusen", "seven thousand"),
    "num-8000": ("kahdeksantuhatta", "åttatusen", "eight thousand"),
    "num-9000": ("yhdeksäntuhatta", "niotusen", "nine thousand"),
    # --- weekdays, 1 = Monday (ISO) ---------------------------------------------------------
    # wd-N: the name. wd-on-N: a day of the past week ("i måndags"). wd-date-N: before a date.
    # wd-until-N: after/before "until" (Finnish illative: "perjantaihin asti").
    "wd-1": ("maanantai", "måndag", "Monday"),
    "wd-2": ("tiistai", "tisdag", "Tuesday"),
    "wd-3": ("keskiviikko", "onsdag", "Wednesday"),
    "wd-4": ("torstai", "torsdag", "Thursday"),
    "wd-5": ("perjantai", "fredag", "Friday"),
    "wd-6": ("lauantai", "lördag", "Saturday"),
    "wd-7": ("sunnuntai", "söndag", "Sunday"),
    "wd-on-1": ("maanantaina", "i måndags", "on Monday"),
    "wd-on-2": ("tiistaina", "i tisdags", "on Tuesday"),
    "wd-on-3": ("keskiviikkona", "i onsdags", "on Wednesday"),
    "wd-on-4": ("torstaina", "i torsdags", "on Thursday"),
    "wd-on-5": ("perjantaina", "i fredags", "on Friday"),
    "wd-on-6": ("lauantaina", "i lördags", "on Saturday"),
    "wd-on-7": ("sunnuntaina", "i söndags", "on Sunday"),
    "wd-date-1": ("maanantaina", "måndagen", "on Monday"),
    "wd-date-2": ("tiistaina", "tisdagen", "on Tuesday"),
    "wd-date-3": ("keskiviikkona", "onsdagen", "on Wednesday"),
    "wd-date-4": ("torstaina", "torsdagen", "on Thursday"),
    "wd-date-5": ("perjantaina", "fredagen", "on Friday"),
    "wd-date-6": ("lauantaina", "lördagen", "on Saturday"),
    "wd-date-7": ("sunnuntaina", "söndagen", "on Sunday"),
    "wd-until-1": ("maanantaihin", "måndag", "Monday"),
    "wd-until-2": ("tiistaihin", "tisdag", "Tuesday"),
    "wd-until-3": ("keskiviikkoon", "onsdag", "Wednesday"),
    "wd-until-4": ("torstaihin", "torsdag", "Thursday"),
    "wd-until-5": ("perjantaihin", "fredag", "Friday"),
    "wd-until-6": ("lauantaihin", "lördag", "Saturday"),
    "wd-until-7": ("sunnuntaihin", "söndag", "Sunday"),
    # --- months, as in a date (Finnish partitive: "elokuuta") -----------------------------
    "month-1": ("tammikuuta", "januari", "January"),
    "month-2": ("helmikuuta", "februari", "February"),
    "month-3": ("maaliskuuta", "mars", "March"),
    "month-4": ("huhtikuuta", "april", "April"),
    "month-5": ("toukokuuta", "maj", "May"),
    "month-6": ("kesäkuuta", "juni", "June"),
    "month-7": ("heinäkuuta", "juli", "July"),
    "month-8": ("elokuuta", "augusti", "August"),
    "month-9": ("syyskuuta", "september", "September"),
    "month-10": ("lokakuuta", "oktober", "October"),
    "month-11": ("marraskuuta", "november", "November"),
    "month-12": ("joulukuuta", "december", "December"),
    # --- ordinal days. day-N: "on the Nth" (Finnish essive); day-until-N: "until the Nth"
    # (Finnish illative). Swedish carries its article: "den tolfte".
    "day-1": ("ensimmäisenä", "den första", "first"),
    "day-2": ("toisena", "den andra", "second"),
    "day-3": ("kolmantena", "den tredje", "third"),
    "day-4": ("neljäntenä", "den fjärde", "fourth"),
    "day-5": ("viidentenä", "den femte", "fifth"),
    "day-6": ("kuudentena", "den sjätte", "sixth"),
    "day-7": ("seitsemäntenä", "den sjunde", "seventh"),
    "day-8": ("kahdeksantena", "den åttonde", "eighth"),
    "day-9": ("yhdeksäntenä", "den nionde", "ninth"),
    "day-10": ("kymmenentenä", "den tionde", "tenth"),
    "day-11": ("yhdentenätoista", "den elfte", "eleventh"),
    "day-12": ("kahdentenatoista", "den tolfte", "twelfth"),
    "day-13": ("kolmantenatoista", "den trettonde", "thirteenth"),
    "day-14": ("neljäntenätoista", "den fjortonde", "fourteenth"),
    "day-15": ("viidentenätoista", "den femtonde", "fifteenth"),
    "day-16": ("kuudentenatoista", "den sextonde", "sixteenth"),
    "day-17": ("seitsemäntenätoista", "den sjuttonde", "seventeenth"),
    "day-18": ("kahdeksantenatoista", "den artonde", "eighteenth"),
    "day-19": ("yhdeksäntenätoista", "den nittonde", "nineteenth"),
    "day-20": ("kahdentenakymmenentenä", "den tjugonde", "twentieth"),
    "day-21": ("kahdentenakymmenentenäensimmäisenä", "den tjugoförsta", "twenty-first"),
    "day-22": ("kahdentenakymmenentenätoisena", "den tjugoandra", "twenty-second"),
    "day-23": ("kahdentenakymmenentenäkolmantena", "den tjugotredje", "twenty-third"),
    "day-24": ("kahdentenakymmenentenäneljäntenä", "den tjugofjärde", "twenty-fourth"),
    "day-25": ("kahdentenakymmenentenäviidentenä", "den tjugofemte", "twenty-fifth"),
    "day-26": ("kahdentenakymmenentenäkuudentena", "den tjugosjätte", "twenty-sixth"),
    "day-27": ("kahdentenakymmenentenäseitsemäntenä", "den tjugosjunde", "twenty-seventh"),
    "day-28": ("kahdentenakymmenentenäkahdeksantena", "den tjugoåttonde", "twenty-eighth"),
    "day-29": ("kahdentenakymmenentenäyhdeksäntenä", "den tjugonionde", "twenty-ninth"),
    "day-30": ("kolmantenakymmenentenä", "den trettionde", "thirtieth"),
    "day-31": ("kolmantenakymmenentenäensimmäisenä", "den trettioförsta", "thirty-first"),
    "day-until-1": ("ensimmäiseen", "den första", "first"),
    "day-until-2": ("toiseen", "den andra", "second"),
    "day-until-3": ("kolmanteen", "den tredje", "third"),
    "day-until-4": ("neljänteen", "den fjärde", "fourth"),
    "day-until-5": ("viidenteen", "den femte", "fifth"),
    "day-until-6": ("kuudenteen", "den sjätte", "sixth"),
    "day-until-7": ("seitsemänteen", "den sjunde", "seventh"),
    "day-until-8": ("kahdeksanteen", "den åttonde", "eighth"),
    "day-until-9": ("yhdeksänteen", "den nionde", "ninth"),
    "day-until-10": ("kymmenenteen", "den tionde", "tenth"),
    "day-until-11": ("yhdenteentoista", "den elfte", "eleventh"),
    "day-until-12": ("kahdenteentoista", "den tolfte", "twelfth"),
    "day-until-13": ("kolmanteentoista", "den trettonde", "thirteenth"),
    "day-until-14": ("neljänteentoista", "den fjortonde", "fourteenth"),
    "day-until-15": ("viidenteentoista", "den femtonde", "fifteenth"),
    "day-until-16": ("kuudenteentoista", "den sextonde", "sixteenth"),
    "day-until-17": ("seitsemänteentoista", "den sjuttonde", "seventeenth"),
    "day-until-18": ("kahdeksanteentoista", "den artonde", "eighteenth"),
    "day-until-19": ("yhdeksänteentoista", "den nittonde", "nineteenth"),
    "day-until-20": ("kahdenteenkymmenenteen", "den tjugonde", "twentieth"),
    "day-until-21": ("kahdenteenkymmenenteenensimmäiseen", "den tjugoförsta", "twenty-first"),
    "day-until-22": ("kahdenteenkymmenenteentoiseen", "den tjugoandra", "twenty-second"),
    "day-until-23": ("kahdenteenkymmenenteenkolmanteen", "den tjugotredje", "twenty-third"),
    "day-until-24": ("kahdenteenkymmenenteenneljänteen", "den tjugofjärde", "twenty-fourth"),
    "day-until-25": ("kahdenteenkymmenenteenviidenteen", "den tjugofemte", "twenty-fifth"),
    "day-until-26": ("kahdenteenkymmenenteenkuudenteen", "den tjugosjätte", "twenty-sixth"),
    "day-until-27": ("kahdenteenkymmenenteenseitsemänteen", "den tjugosjunde", "twenty-seventh"),
    "day-until-28": ("kahdenteenkymmenenteenkahdeksanteen", "den tjugoåttonde", "twenty-eighth"),
    "day-until-29": ("kahdenteenkymmenenteenyhdeksänteen", "den tjugonionde", "twenty-ninth"),
    "day-until-30": ("kolmanteenkymmenenteen", "den trettionde", "thirtieth"),
    "day-until-31": ("kolmanteenkymmenenteenensimmäiseen", "den trettioförsta", "thirty-first"),
    # --- conference rooms ---------------------------------------------------------------------
    "conf-welcome": ("Tervetuloa neuvotteluun.", "Välkommen till konferensen.", "Welcome to the conference service."),
    "conf-enter-room": (
        "Näppäile neuvotteluhuoneen numero ja paina risuaita.",
        "Slå konferensrummets nummer och avsluta med fyrkant.",
        "Please enter the conference room number, followed by the hash key.",
    ),
    "conf-enter-pin": (
        "Näppäile huoneen tunnusluku ja paina risuaita.",
        "Slå rummets PIN-kod och avsluta med fyrkant.",
        "Please enter the room's PIN, followed by the hash key.",
    ),
    "conf-refused": (
        "Huoneen numero tai tunnusluku on väärä.",
        "Fel rumsnummer eller PIN-kod.",
        "The room number or PIN is incorrect.",
    ),
    "conf-joining": ("Liityt neuvotteluun.", "Du ansluts till konferensen.", "You are joining the conference."),
    # --- whole hours after "until" (Finnish illative: "kello kuuteentoista asti") ----------
    "hour-until-0": ("nollaan", "noll", "zero"),
    "hour-until-1": ("yhteen", "ett", "one"),
    "hour-until-2": ("kahteen", "två", "two"),
    "hour-until-3": ("kolmeen", "tre", "three"),
    "hour-until-4": ("neljään", "fyra", "four"),
    "hour-until-5": ("viiteen", "fem", "five"),
    "hour-until-6": ("kuuteen", "sex", "six"),
    "hour-until-7": ("seitsemään", "sju", "seven"),
    "hour-until-8": ("kahdeksaan", "åtta", "eight"),
    "hour-until-9": ("yhdeksään", "nio", "nine"),
    "hour-until-10": ("kymmeneen", "tio", "ten"),
    "hour-until-11": ("yhteentoista", "elva", "eleven"),
    "hour-until-12": ("kahteentoista", "tolv", "twelve"),
    "hour-until-13": ("kolmeentoista", "tretton", "thirteen"),
    "hour-until-14": ("neljääntoista", "fjorton", "fourteen"),
    "hour-until-15": ("viiteentoista", "femton", "fifteen"),
    "hour-until-16": ("kuuteentoista", "sexton", "sixteen"),
    "hour-until-17": ("seitsemääntoista", "sjutton", "seventeen"),
    "hour-until-18": ("kahdeksaantoista", "arton", "eighteen"),
    "hour-until-19": ("yhdeksääntoista", "nitton", "nineteen"),
    "hour-until-20": ("kahteenkymmeneen", "tjugo", "twenty"),
    "hour-until-21": ("kahteenkymmeneenyhteen", "tjugoett", "twenty-one"),
    "hour-until-22": ("kahteenkymmeneenkahteen", "tjugotvå", "twenty-two"),
    "hour-until-23": ("kahteenkymmeneenkolmeen", "tjugotre", "twenty-three"),
}

# Activity keys with prompts, in the order of SPEC (tenants may add their own later).
ACTIVITIES = ("available", "busy", "meeting", "lunch", "off-work", "vacation", "sick")


def names() -> list[str]:
    """Every prompt name, spoken and tones."""
    return [*PROMPTS, *TONES]


def text(lang: str, name: str) -> str:
    """The text of NAME in LANG; KeyError for an unknown name, ValueError for an unknown language."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; known: {', '.join(LANGUAGES)}")
    return PROMPTS[name][LANGUAGES.index(lang)]
