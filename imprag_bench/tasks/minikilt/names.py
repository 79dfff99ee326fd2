"""Static English names for the codes the country facts use (ISO 639-1 languages, ISO 4217 currencies).

Why a static table: countryinfo stores official languages as ISO 639-1 codes and geonames stores only a bare
currency word ("Dollar"), so questions like "official language of X" need readable answers. Currency names are the common
English (Wikipedia article) names of the ISO 4217 codes. The language
names were taken from the ISO 639 table shipped in `datasets` (utils/resources/languages.json), cleaned
(first common name first, other names kept as aliases) and frozen here so the build never depends on
another package's internals.
"""
from __future__ import annotations

# ISO 639-1 (and `cnr`) -> [canonical English name, aliases...]. Only codes that countryinfo uses.
LANGUAGES: dict[str, list[str]] = {
    "af": ["Afrikaans"], "am": ["Amharic"], "ar": ["Arabic"], "ay": ["Aymara"], "az": ["Azerbaijani"],
    "be": ["Belarusian"], "bg": ["Bulgarian"], "bi": ["Bislama"], "bn": ["Bengali", "Bangla"],
    "bs": ["Bosnian"], "ca": ["Catalan", "Valencian"], "ch": ["Chamorro"], "cnr": ["Montenegrin"],
    "cs": ["Czech"], "da": ["Danish"], "de": ["German"], "dv": ["Dhivehi", "Divehi", "Maldivian"],
    "dz": ["Dzongkha"], "el": ["Greek", "Modern Greek"], "en": ["English"], "es": ["Spanish", "Castilian"],
    "et": ["Estonian"], "fa": ["Persian", "Farsi"], "ff": ["Fula", "Fulah"], "fi": ["Finnish"],
    "fj": ["Fijian"], "fo": ["Faroese"], "fr": ["French"], "ga": ["Irish"], "gn": ["Guarani"],
    "gv": ["Manx"], "he": ["Hebrew"], "hi": ["Hindi"], "hr": ["Croatian"], "ht": ["Haitian Creole", "Haitian"],
    "hu": ["Hungarian"], "hy": ["Armenian"], "id": ["Indonesian"], "is": ["Icelandic"], "it": ["Italian"],
    "ja": ["Japanese"], "ka": ["Georgian"], "kg": ["Kongo"], "kk": ["Kazakh"],
    "kl": ["Greenlandic", "Kalaallisut"], "km": ["Khmer", "Central Khmer"], "ko": ["Korean"],
    "ku": ["Kurdish"], "ky": ["Kyrgyz", "Kirghiz"], "la": ["Latin"], "lb": ["Luxembourgish"],
    "ln": ["Lingala"], "lo": ["Lao"], "lt": ["Lithuanian"], "lu": ["Luba-Katanga"], "lv": ["Latvian"],
    "mg": ["Malagasy"], "mh": ["Marshallese"], "mi": ["Maori"], "mk": ["Macedonian"], "mn": ["Mongolian"],
    "ms": ["Malay"], "mt": ["Maltese"], "my": ["Burmese"], "na": ["Nauruan", "Nauru"],
    "nb": ["Norwegian Bokmål", "Norwegian", "Bokmål"], "nd": ["North Ndebele", "Ndebele"],
    "ne": ["Nepali"], "nl": ["Dutch", "Flemish"], "nn": ["Norwegian Nynorsk", "Norwegian", "Nynorsk"],
    "no": ["Norwegian"], "nr": ["South Ndebele", "Ndebele"], "ny": ["Chichewa", "Chewa", "Nyanja"],
    "oc": ["Occitan"], "pa": ["Punjabi", "Panjabi"], "pl": ["Polish"], "ps": ["Pashto", "Pushto"],
    "pt": ["Portuguese"], "qu": ["Quechua"], "rn": ["Kirundi", "Rundi"], "ro": ["Romanian", "Moldovan"],
    "ru": ["Russian"], "rw": ["Kinyarwanda"], "sg": ["Sango"], "si": ["Sinhala", "Sinhalese"],
    "sk": ["Slovak"], "sl": ["Slovenian", "Slovene"], "sm": ["Samoan"], "sn": ["Shona"], "so": ["Somali"],
    "sq": ["Albanian"], "sr": ["Serbian"], "ss": ["Swati", "Swazi"], "st": ["Sesotho", "Southern Sotho"],
    "sv": ["Swedish"], "sw": ["Swahili"], "ta": ["Tamil"], "tg": ["Tajik"], "th": ["Thai"],
    "ti": ["Tigrinya"], "tk": ["Turkmen"], "tn": ["Tswana", "Setswana"], "to": ["Tongan", "Tonga"],
    "tr": ["Turkish"], "ts": ["Tsonga"], "uk": ["Ukrainian"], "ur": ["Urdu"], "uz": ["Uzbek"],
    "ve": ["Venda"], "vi": ["Vietnamese"], "xh": ["Xhosa"], "zh": ["Chinese", "Mandarin"], "zu": ["Zulu"],
}

# ISO 4217 code -> common English name (Wikipedia article names), for the codes the country facts use.
CURRENCIES: dict[str, str] = {
    "AED": "UAE dirham", "AFN": "Afghan afghani", "ALL": "Albanian lek", "AMD": "Armenian dram",
    "AOA": "Angolan kwanza", "ARS": "Argentine peso", "AUD": "Australian dollar", "AWG": "Aruban florin",
    "AZN": "Azerbaijani manat", "BAM": "Bosnia and Herzegovina convertible mark", "BBD": "Barbadian dollar",
    "BDT": "Bangladeshi taka", "BGN": "Bulgarian lev", "BHD": "Bahraini dinar", "BIF": "Burundian franc",
    "BMD": "Bermudian dollar", "BND": "Brunei dollar", "BOB": "Bolivian boliviano", "BRL": "Brazilian real",
    "BSD": "Bahamian dollar", "BTN": "Bhutanese ngultrum", "BWP": "Botswana pula", "BZD": "Belize dollar",
    "CAD": "Canadian dollar", "CDF": "Congolese franc", "CHF": "Swiss franc", "CLP": "Chilean peso",
    "CNY": "Renminbi", "COP": "Colombian peso", "CRC": "Costa Rican colón", "CUP": "Cuban peso",
    "CVE": "Cape Verdean escudo", "CZK": "Czech koruna", "DJF": "Djiboutian franc", "DKK": "Danish krone",
    "DOP": "Dominican peso", "DZD": "Algerian dinar", "EGP": "Egyptian pound", "ERN": "Eritrean nakfa",
    "ETB": "Ethiopian birr", "EUR": "Euro", "FJD": "Fijian dollar", "FKP": "Falkland Islands pound",
    "GBP": "Pound sterling", "GEL": "Georgian lari", "GHS": "Ghanaian cedi", "GIP": "Gibraltar pound",
    "GMD": "Gambian dalasi", "GNF": "Guinean franc", "GTQ": "Guatemalan quetzal", "GYD": "Guyanese dollar",
    "HKD": "Hong Kong dollar", "HNL": "Honduran lempira", "HTG": "Haitian gourde", "HUF": "Hungarian forint",
    "IDR": "Indonesian rupiah", "ILS": "Israeli new shekel", "INR": "Indian rupee", "IQD": "Iraqi dinar",
    "IRR": "Iranian rial", "ISK": "Icelandic króna", "JMD": "Jamaican dollar", "JOD": "Jordanian dinar",
    "JPY": "Japanese yen", "KES": "Kenyan shilling", "KGS": "Kyrgyzstani som", "KHR": "Cambodian riel",
    "KMF": "Comorian franc", "KPW": "North Korean won", "KRW": "South Korean won", "KWD": "Kuwaiti dinar",
    "KYD": "Cayman Islands dollar", "KZT": "Kazakhstani tenge", "LAK": "Lao kip", "LBP": "Lebanese pound",
    "LKR": "Sri Lankan rupee", "LRD": "Liberian dollar", "LSL": "Lesotho loti", "LYD": "Libyan dinar",
    "MAD": "Moroccan dirham", "MDL": "Moldovan leu", "MGA": "Malagasy ariary", "MKD": "Macedonian denar",
    "MMK": "Burmese kyat", "MNT": "Mongolian tögrög", "MUR": "Mauritian rupee", "MVR": "Maldivian rufiyaa",
    "MWK": "Malawian kwacha", "MXN": "Mexican peso", "MYR": "Malaysian ringgit", "MZN": "Mozambican metical",
    "NAD": "Namibian dollar", "NGN": "Nigerian naira", "NIO": "Nicaraguan córdoba", "NOK": "Norwegian krone",
    "NPR": "Nepalese rupee", "NZD": "New Zealand dollar", "OMR": "Omani rial", "PAB": "Panamanian balboa",
    "PEN": "Peruvian sol", "PGK": "Papua New Guinean kina", "PHP": "Philippine peso", "PKR": "Pakistani rupee",
    "PLN": "Polish złoty", "PYG": "Paraguayan guaraní", "QAR": "Qatari riyal", "RON": "Romanian leu",
    "RSD": "Serbian dinar", "RUB": "Russian ruble", "RWF": "Rwandan franc", "SAR": "Saudi riyal",
    "SBD": "Solomon Islands dollar", "SCR": "Seychellois rupee", "SDG": "Sudanese pound", "SEK": "Swedish krona",
    "SGD": "Singapore dollar", "SHP": "Saint Helena pound", "SOS": "Somali shilling", "SRD": "Surinamese dollar",
    "SSP": "South Sudanese pound", "SYP": "Syrian pound", "SZL": "Swazi lilangeni", "THB": "Thai baht",
    "TJS": "Tajikistani somoni", "TMT": "Turkmenistan manat", "TND": "Tunisian dinar", "TOP": "Tongan paʻanga",
    "TRY": "Turkish lira", "TTD": "Trinidad and Tobago dollar", "TWD": "New Taiwan dollar",
    "TZS": "Tanzanian shilling", "UAH": "Ukrainian hryvnia", "UGX": "Ugandan shilling",
    "USD": "United States dollar", "UYU": "Uruguayan peso", "UZS": "Uzbekistani som", "VND": "Vietnamese dong",
    "VUV": "Vanuatu vatu", "WST": "Samoan tala", "XAF": "Central African CFA franc",
    "XCD": "East Caribbean dollar", "XOF": "West African CFA franc", "XPF": "CFP franc", "YER": "Yemeni rial",
    "ZAR": "South African rand",
}

# geonames continent codes -> names.
CONTINENTS: dict[str, str] = {
    "AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "North America", "SA": "South America",
    "OC": "Oceania", "AN": "Antarctica",
}


def language_names(code: str) -> list[str]:
    """English name(s) of an ISO 639-1 code, canonical first; [] for an unknown code."""
    return list(LANGUAGES.get(code, []))


def currency_names(code: str, word: str) -> list[str]:
    """Answer aliases for a currency: full English name (if known), the bare geonames word, the ISO code."""
    out: list[str] = []
    for a in (CURRENCIES.get(code, ""), word, code):
        if a and a not in out:
            out.append(a)
    return out
