"""The definition of the demo's built-in tool catalog; `catalog.json` beside this file is
generated from it (`python -m petool_jax.app.demo.catalog_source` rewrites it; a test checks that
the two agree).

The catalog is written for this project, in the shape PEToolBench was built from: 10
categories, 20 functionality groups, 2-4 providers (tools) per group. Providers of one
category offer the same API names (as on RapidAPI, where equivalent tools share API names)
with their own parameter names, and differ in their non-functional attributes, which come
from four profiles:

    open    free, high service level, detailed documentation
    pro     paid, high service level, detailed documentation
    budget  freemium, medium service level, brief documentation
    basic   free, low service level, sparse documentation (no API or parameter descriptions)

synth's offline tool understanding reads exactly these fields (pricing, score, parameter
descriptions, description length), so users who like one profile
prefer its tools across categories. Every API carries example instructions with their
parameters: the group's instructions, drawn once from its templates, with slot values
copied verbatim into each provider's own parameter names. Every provider of a group has the
SAME instruction texts, so neither a query nor a past instruction tells which provider served
it: only the user's history does (a model cannot learn "this text -> that provider").
"""

from __future__ import annotations

import json
import pathlib
import random

EXAMPLES_PER_API = 36
SEED = 2025
CATALOG_PATH = pathlib.Path(__file__).with_name("catalog.json")

PROFILES = {
    "open": {"pricing": "FREE", "score": {"avgServiceLevel": 99, "avgLatency": 140, "avgSuccessRate": 99},
             "docs": "detailed"},
    "pro": {"pricing": "PAID", "score": {"avgServiceLevel": 97, "avgLatency": 90, "avgSuccessRate": 98},
            "docs": "detailed"},
    "budget": {"pricing": "FREEMIUM", "score": {"avgServiceLevel": 84, "avgLatency": 420, "avgSuccessRate": 86},
               "docs": "brief"},
    "basic": {"pricing": "FREE", "score": {"avgServiceLevel": 58, "avgLatency": 900, "avgSuccessRate": 61},
              "docs": "sparse"},
}

CITIES = ["Lisbon", "Nairobi", "Osaka", "Denver", "Krakow", "Santiago", "Hanoi", "Calgary", "Porto", "Dublin",
          "Seville", "Accra", "Perth", "Quebec", "Bergen", "Tbilisi", "Medellin", "Cusco", "Zagreb", "Valencia",
          "Tallinn", "Leeds", "Mombasa", "Hobart"]
VALUES = {
    "city": ("STRING", "City name", "London", CITIES),
    "origin": ("STRING", "Starting city", "London", CITIES),
    "destination": ("STRING", "Destination city", "Paris", CITIES),
    "days": ("NUMBER", "Number of days", "3", list(range(1, 8))),
    "nights": ("NUMBER", "Number of nights", "2", list(range(1, 11))),
    "symbol": ("STRING", "Stock ticker symbol", "AAPL",
               ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "KO", "PEP", "NKE", "INTC", "ORCL", "SAP", "SONY",
                "SHOP", "UBER", "SBUX", "ADBE"]),
    "amount": ("NUMBER", "Amount of money", "100", [20, 50, 75, 100, 150, 200, 250, 500, 1000, 1200, 40, 90]),
    "from": ("STRING", "Currency to convert from", "USD",
             ["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "INR", "BRL", "MXN"]),
    "to": ("STRING", "Currency to convert to", "EUR",
           ["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "INR", "BRL", "MXN"]),
    "flight": ("STRING", "Flight number", "BA117",
               ["LH402", "BA117", "AF83", "KL641", "UA901", "DL44", "EK203", "QF11", "TK33", "IB6251",
                "AZ610", "LX17", "SK925", "AC870"]),
    "ingredient": ("STRING", "Main ingredient", "rice",
                   ["chickpeas", "spinach", "salmon", "mushrooms", "lentils", "tofu", "eggplant", "shrimp",
                    "pumpkin", "quinoa", "avocado", "sweet potato", "feta", "cauliflower"]),
    "cuisine": ("STRING", "Kind of food", "Italian",
                ["Thai", "Ethiopian", "Peruvian", "Korean", "Lebanese", "Mexican", "Greek", "Vietnamese",
                 "Georgian", "Indian"]),
    "artist": ("STRING", "Artist name", "Adele",
               ["Miles Davis", "Nina Simone", "Bob Marley", "Daft Punk", "Fela Kuti", "Bjork", "Radiohead",
                "Shakira", "Ravi Shankar", "Dolly Parton", "Kendrick Lamar", "Cesaria Evora",
                "Ali Farka Toure", "Joni Mitchell", "Caetano Veloso", "Youssou Ndour"]),
    "song": ("STRING", "Song title", "Northern Rain",
             ["Harbor Lights", "Paper Moon Parade", "Northern Rain", "Golden Hour Drive", "Midnight Orchard",
              "Salt and Cedar", "Velvet Static", "Long Way to Lisbon", "Copper Skies", "Quiet Engines",
              "Lantern Street", "Winter Tide"]),
    "topic": ("STRING", "News topic", "science",
              ["climate", "elections", "space exploration", "football", "AI regulation", "housing",
               "public health", "electric cars", "the economy", "education", "farming", "tourism"]),
    "keyword": ("STRING", "Search keyword", "energy",
                ["solar power", "inflation", "vaccines", "wildfires", "chip shortage", "rail strikes",
                 "coral reefs", "minimum wage", "bird flu", "quantum computing"]),
    "address": ("STRING", "Street address", "1 Main Street",
                ["350 Fifth Avenue, New York", "Rua Augusta 100, Lisbon", "Karl-Marx-Allee 1, Berlin",
                 "221B Baker Street, London", "1 Harbour Street, Sydney", "Via del Corso 12, Rome",
                 "Calle Mayor 5, Madrid", "Damrak 70, Amsterdam", "Nevsky Avenue 28, Saint Petersburg",
                 "King Street 18, Toronto", "Orchard Road 290, Singapore", "Rue de Rivoli 99, Paris",
                 "Main Street 4, Galway", "Andrassy Avenue 60, Budapest", "Dizengoff Street 50, Tel Aviv",
                 "Long Street 12, Cape Town"]),
    "text": ("STRING", "Text to translate", "Hello",
             ["Where is the train station?", "I would like a cup of coffee", "The meeting starts at noon",
              "Thank you for your help", "How much does this cost?", "Please close the window",
              "We are lost", "The museum opens tomorrow", "I need a doctor", "See you next week"]),
    "lang": ("STRING", "Target language", "French",
             ["French", "German", "Spanish", "Japanese", "Portuguese", "Italian", "Korean", "Turkish",
              "Swahili", "Dutch"]),
    "foreign": ("STRING", "Text whose language is wanted", "Bonjour",
                ["Ou est la gare", "Ich habe Hunger", "Donde esta el museo", "Buongiorno a tutti",
                 "Obrigado pela ajuda", "Dank je wel", "Jag alskar kaffe", "Dzien dobry", "Hyvaa huomenta",
                 "Tack sa mycket", "Merhaba dunya", "Habari za asubuhi"]),
    "team": ("STRING", "Team name", "Arsenal",
             ["Arsenal", "Boca Juniors", "Celtic", "Ajax", "Benfica", "Napoli", "Galatasaray", "Sevilla",
              "River Plate", "Lyon", "Dortmund", "Feyenoord"]),
    "league": ("STRING", "League name", "Premier League",
               ["Premier League", "La Liga", "Serie A", "Bundesliga", "Ligue 1", "Eredivisie", "MLS",
                "J1 League", "Primeira Liga", "Super Lig", "A-League", "Scottish Premiership"]),
    "title": ("STRING", "Movie title", "Casablanca",
              ["Inception", "Parasite", "Amelie", "Spirited Away", "The Matrix", "Casablanca", "Arrival",
               "Roma", "Coco", "Alien", "Heat", "Metropolis"]),
}

# group id -> (category, API name, what it does, slots, instruction templates)
GROUPS = {
    "weather_forecast": ("Weather", "forecast", "Weather forecast for a city", ["city", "days"], [
        "What will the weather be like in {city} over the next {days} days?",
        "Give me a {days}-day forecast for {city}.",
        "Is it going to rain in {city} in the coming {days} days?",
        "I need the weather outlook for {city} for {days} days.",
        "Forecast for {city}, next {days} days please.",
        "Should I pack an umbrella for {city}? Show {days} days of forecast."]),
    "weather_air": ("Weather", "air_quality", "Current air quality index of a city", ["city"], [
        "How clean is the air in {city} right now?",
        "Check the air quality index for {city}.",
        "Is the pollution level high in {city} today?",
        "Get current air pollution readings for {city}.",
        "I have asthma; what is the air quality in {city}?"]),
    "finance_quote": ("Finance", "stock_quote", "Latest price of a stock", ["symbol"], [
        "What is the latest price of {symbol} stock?",
        "Get me a quote for {symbol}.",
        "How is {symbol} trading today?",
        "Show the current share price of {symbol}.",
        "I want to check {symbol} before the market closes."]),
    "finance_fx": ("Finance", "currency_convert", "Convert an amount between currencies", ["amount", "from", "to"], [
        "Convert {amount} {from} to {to}.",
        "How much is {amount} {from} in {to}?",
        "I want to exchange {amount} {from} into {to}.",
        "What do {amount} {from} come to in {to} today?"]),
    "travel_flight": ("Travel", "flight_status", "Live status of a flight", ["flight"], [
        "Is flight {flight} on time?",
        "What's the status of flight {flight}?",
        "Track flight {flight} for me.",
        "Has flight {flight} departed yet?",
        "My sister is on {flight}; is it delayed?"]),
    "travel_hotel": ("Travel", "hotel_search", "Hotels available in a city", ["city", "nights"], [
        "Find a hotel in {city} for {nights} nights.",
        "Search hotels in {city}, staying {nights} nights.",
        "I need a place to stay in {city} for {nights} nights.",
        "Book ideas: hotels in {city}, {nights} nights."]),
    "food_recipe": ("Food", "recipe_search", "Recipes using an ingredient", ["ingredient"], [
        "Find me a recipe with {ingredient}.",
        "What can I cook with {ingredient}?",
        "Suggest a dinner recipe using {ingredient}.",
        "I have some {ingredient} left; any recipe ideas?",
        "Show recipes that feature {ingredient}."]),
    "food_restaurant": ("Food", "restaurant_finder", "Restaurants of a cuisine in a city", ["cuisine", "city"], [
        "Find a {cuisine} restaurant in {city}.",
        "Where can I eat {cuisine} food in {city}?",
        "Recommend {cuisine} places to eat in {city}.",
        "Any good {cuisine} restaurants near {city} center?"]),
    "music_songs": ("Music", "song_search", "Songs by an artist", ["artist"], [
        "Find songs by {artist}.",
        "List popular tracks of {artist}.",
        "What are the best songs from {artist}?",
        "Play something by {artist}."]),
    "music_lyrics": ("Music", "lyrics", "Lyrics of a song", ["song"], [
        "Show me the lyrics of {song}.",
        "What are the words to {song}?",
        "I need the lyrics for the song {song}.",
        "Get lyrics: {song}."]),
    "news_headlines": ("News", "headlines", "Top headlines on a topic", ["topic"], [
        "What are today's top headlines about {topic}?",
        "Show me the latest news on {topic}.",
        "Any breaking news about {topic}?",
        "Give me a headline summary for {topic}."]),
    "news_search": ("News", "article_search", "News articles matching a keyword", ["keyword", "days"], [
        "Search news articles about {keyword} from the last {days} days.",
        "Find reporting on {keyword} published in the past {days} days.",
        "Look up stories mentioning {keyword}, last {days} days.",
        "What has been written about {keyword} over the past {days} days?"]),
    "maps_geocode": ("Maps", "geocode", "Coordinates of an address", ["address"], [
        "What are the coordinates of {address}?",
        "Geocode the address {address}.",
        "Find latitude and longitude for {address}.",
        "Where exactly is {address} on the map?"]),
    "maps_route": ("Maps", "route_distance", "Driving distance between two cities", ["origin", "destination"], [
        "How far is it from {origin} to {destination}?",
        "Driving distance between {origin} and {destination}?",
        "Plan a route from {origin} to {destination}.",
        "How long is the drive from {origin} to {destination}?"]),
    "translation_text": ("Translation", "translate", "Translate a text", ["text", "lang"], [
        "Translate '{text}' into {lang}.",
        "How do you say '{text}' in {lang}?",
        "Please put '{text}' in {lang}.",
        "I need '{text}' translated to {lang}."]),
    "translation_detect": ("Translation", "detect_language", "Language of a text", ["foreign"], [
        "Which language is '{foreign}' written in?",
        "Detect the language of '{foreign}'.",
        "What language is this: '{foreign}'?",
        "Identify the language of the phrase '{foreign}'."]),
    "sports_scores": ("Sports", "match_scores", "Latest match results of a team", ["team"], [
        "What was the score of the last {team} game?",
        "Did {team} win their last match?",
        "Show recent results for {team}.",
        "How did {team} do at the weekend?"]),
    "sports_standings": ("Sports", "standings", "League table", ["league"], [
        "Show the current {league} standings.",
        "Who is top of the {league}?",
        "Give me the {league} table.",
        "Where does everyone stand in the {league} this season?",
        "How close is the title race in the {league}?"]),
    "movies_info": ("Movies", "movie_search", "Details of a movie", ["title"], [
        "Find information about the movie {title}.",
        "Who directed {title}?",
        "Tell me about the film {title}.",
        "What is {title} rated?"]),
    "movies_showtimes": ("Movies", "showtimes", "Cinema showtimes of a movie in a city", ["title", "city"], [
        "When is {title} playing in {city}?",
        "Find showtimes for {title} in {city}.",
        "Which cinemas in {city} show {title}?",
        "Can I watch {title} in {city} tonight?"]),
}

# category -> [(tool, profile, {group: {slot: parameter name}})]
PROVIDERS = {
    "Weather": [
        ("SkyCast", "open", {"weather_forecast": {"city": "city", "days": "days"}, "weather_air": {"city": "city"}}),
        ("NimbusAPI", "pro", {"weather_forecast": {"city": "location", "days": "forecast_days"},
                              "weather_air": {"city": "location"}}),
        ("WeatherGrid", "budget", {"weather_forecast": {"city": "q", "days": "days"}, "weather_air": {"city": "q"}}),
        ("StormBit", "basic", {"weather_forecast": {"city": "city_name", "days": "num_days"}}),
    ],
    "Finance": [
        ("TickerTape", "budget", {"finance_quote": {"symbol": "symbol"},
                                  "finance_fx": {"amount": "amount", "from": "from", "to": "to"}}),
        ("MarketPulse", "pro", {"finance_quote": {"symbol": "ticker"},
                                "finance_fx": {"amount": "value", "from": "base", "to": "target"}}),
        ("FinStream", "open", {"finance_quote": {"symbol": "symbol"},
                               "finance_fx": {"amount": "amount", "from": "from_currency", "to": "to_currency"}}),
    ],
    "Travel": [
        ("FlyTrack", "open", {"travel_flight": {"flight": "flight_number"}}),
        ("AeroInfo", "pro", {"travel_flight": {"flight": "flight"}, "travel_hotel": {"city": "city", "nights": "nights"}}),
        ("TripNest", "basic", {"travel_flight": {"flight": "flight_iata"},
                               "travel_hotel": {"city": "destination", "nights": "nights"}}),
    ],
    "Food": [
        ("CookBook", "basic", {"food_recipe": {"ingredient": "ingredient"},
                               "food_restaurant": {"cuisine": "cuisine", "city": "city"}}),
        ("ChefDB", "open", {"food_recipe": {"ingredient": "query"},
                            "food_restaurant": {"cuisine": "food_type", "city": "location"}}),
        ("DineOut", "budget", {"food_restaurant": {"cuisine": "cuisine", "city": "near"}}),
    ],
    "Music": [
        ("TuneBase", "pro", {"music_songs": {"artist": "artist"}, "music_lyrics": {"song": "title"}}),
        ("Melodix", "budget", {"music_songs": {"artist": "artist_name"}, "music_lyrics": {"song": "song"}}),
        ("SoundScout", "open", {"music_songs": {"artist": "q"}, "music_lyrics": {"song": "track"}}),
    ],
    "News": [
        ("DailyWire", "budget", {"news_headlines": {"topic": "topic"},
                                 "news_search": {"keyword": "keyword", "days": "days"}}),
        ("PressHub", "open", {"news_headlines": {"topic": "category"},
                              "news_search": {"keyword": "q", "days": "past_days"}}),
    ],
    "Maps": [
        ("GeoPoint", "open", {"maps_geocode": {"address": "address"},
                              "maps_route": {"origin": "origin", "destination": "destination"}}),
        ("MapQuestr", "pro", {"maps_geocode": {"address": "location"},
                              "maps_route": {"origin": "from", "destination": "to"}}),
        ("Waypoint", "budget", {"maps_geocode": {"address": "query"},
                                "maps_route": {"origin": "start", "destination": "end"}}),
        ("Locatr", "basic", {"maps_geocode": {"address": "addr"}, "maps_route": {"origin": "src", "destination": "dst"}}),
    ],
    "Translation": [
        ("LinguaFlow", "pro", {"translation_text": {"text": "text", "lang": "target_lang"},
                               "translation_detect": {"foreign": "text"}}),
        ("TransPro", "budget", {"translation_text": {"text": "q", "lang": "target"},
                                "translation_detect": {"foreign": "q"}}),
        ("PolyglotAPI", "basic", {"translation_text": {"text": "source_text", "lang": "to"},
                                  "translation_detect": {"foreign": "input"}}),
    ],
    "Sports": [
        ("ScoreLine", "open", {"sports_scores": {"team": "team"}, "sports_standings": {"league": "league"}}),
        ("PlayStats", "basic", {"sports_scores": {"team": "team_name"}, "sports_standings": {"league": "competition"}}),
        ("ArenaFeed", "pro", {"sports_scores": {"team": "club"}, "sports_standings": {"league": "league_name"}}),
    ],
    "Movies": [
        ("CineBase", "open", {"movies_info": {"title": "title"}, "movies_showtimes": {"title": "title", "city": "city"}}),
        ("FilmFinder", "budget", {"movies_info": {"title": "query"},
                                  "movies_showtimes": {"title": "movie", "city": "location"}}),
        ("ReelTime", "pro", {"movies_info": {"title": "movie_title"},
                             "movies_showtimes": {"title": "film", "city": "town"}}),
    ],
}

_TOOL_BLURB = {
    "detailed": "{tool} offers {what} through a stable, versioned REST interface. Every endpoint and "
                "parameter is documented with examples, responses are JSON, and the service publishes "
                "its uptime and rate limits.",
    "brief": "{tool}: {what} API with a free tier.",
    "sparse": "{tool}",
}


def _params(profile: dict, group: str, names: dict) -> list[dict]:
    documented = profile["docs"] != "sparse"
    return [{"name": names[slot], "type": VALUES[slot][0], "description": VALUES[slot][1] if documented else "",
             "default": VALUES[slot][2]} for slot in GROUPS[group][3]]


def group_instructions(rng: random.Random, group: str) -> list[dict]:
    """EXAMPLES_PER_API distinct (instruction, slot values) of a group, shared by its providers."""
    _, _, _, slots, templates = GROUPS[group]
    out, seen = [], set()
    tries = 0
    while len(out) < EXAMPLES_PER_API:
        tries += 1
        if tries > 10_000:
            raise RuntimeError(f"{group}: cannot draw {EXAMPLES_PER_API} distinct instructions")
        values = {slot: rng.choice(VALUES[slot][3]) for slot in slots}
        if "from" in values and values["from"] == values["to"]:
            continue
        if "origin" in values and values["origin"] == values["destination"]:
            continue
        text = rng.choice(templates).format(**values)
        if text not in seen:
            seen.add(text)
            out.append({"instruction": text, "values": values})
    return out


def build_catalog() -> list[dict]:
    """The catalog as ToolBench-style tool documents whose APIs carry `func` and `examples`."""
    rng = random.Random(SEED)
    instructions = {group: group_instructions(rng, group) for group in GROUPS}
    tools = []
    api_id = 9000
    for category, providers in PROVIDERS.items():
        for tool, profile_name, offers in providers:
            profile = PROFILES[profile_name]
            whats = " and ".join(GROUPS[g][2].lower() for g in offers)
            api_list = []
            for group, names in offers.items():
                g_category, api_name, what, _, _ = GROUPS[group]
                assert g_category == category, (tool, group)
                # Candidate documents are what a model reads 10 times per prompt: kept short.
                description = {"detailed": what, "brief": what, "sparse": ""}[profile["docs"]]
                api_id += 1
                api_list.append({
                    "name": api_name, "description": description, "method": "GET",
                    "required_parameters": _params(profile, group, names), "optional_parameters": [],
                    "api_id": api_id,
                    "func": group,
                    "examples": [{"instruction": x["instruction"],
                                  "parameters": {names[slot]: value for slot, value in x["values"].items()}}
                                 for x in instructions[group]],
                })
            tools.append({
                "tool_name": tool, "category_name": category,
                "tool_description": _TOOL_BLURB[profile["docs"]].format(tool=tool, what=whats),
                "pricing": profile["pricing"], "score": dict(profile["score"]), "profile": profile_name,
                "api_list": api_list,
            })
    return tools


def catalog_text() -> str:
    return json.dumps(build_catalog(), ensure_ascii=False, indent=1) + "\n"


if __name__ == "__main__":
    CATALOG_PATH.write_text(catalog_text(), encoding="utf-8")
    print(f"wrote {CATALOG_PATH}")
