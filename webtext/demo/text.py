"""Seeded generator of English news prose: distinct articles that read as English to a language
identifier and pass quality filters, without shipping anyone's text."""

from __future__ import annotations

import random

FIRST = "Anna Ben Carla David Elena Frank Grace Henry Irene James Karen Liam Maria Noah Olivia Peter Quinn Rosa Samuel Tara Victor Wendy Adam Beth Colin Diana Ethan Fiona George Hannah Isaac Julia Kevin Laura Martin Nora Oscar Paula Ruth Simon".split()
LAST = "Adams Baker Carter Dawson Ellis Fisher Garcia Hughes Irving Jensen Keller Lambert Morgan Nolan Owens Parker Quinlan Reyes Schmidt Turner Usher Vaughn Walsh Young Zimmer Brooks Chandler Doyle Emerson Foster Grant Harper Ingram Jordan Knight Lowell Mercer Newman Porter Russell".split()
CITIES = "Springfield Riverton Lakewood Fairview Brookfield Greenville Maplewood Oakridge Westport Ashford Bellmont Cedarville Danbury Eastwick Fulton Glenwood Harrisburg Ironwood Jamestown Kingsley Linden Milford Newbury Oldham Pinecrest Redmond Salem Thornton Upton Vernon Weston Yorktown".split()
ORGS = [
    "city council",
    "school board",
    "state university",
    "regional hospital",
    "transit authority",
    "water utility",
    "chamber of commerce",
    "public library",
    "farmers cooperative",
    "historical society",
    "county court",
    "fire department",
    "parks department",
    "housing agency",
    "health department",
    "planning commission",
]
TOPICS = {
    "science": "telescope laboratory experiment molecule researcher sample vaccine particle genome satellite fossil microscope climate reactor orbit protein sensor dataset theory measurement".split(),
    "business": "startup investor merger factory supplier market profit revenue contract warehouse retailer shareholder loan budget forecast export tariff payroll brand customer".split(),
    "sports": "coach striker goalkeeper season tournament stadium referee championship rookie playoff league trophy fixture defender sprinter marathon injury transfer captain scoreboard".split(),
    "politics": "senator election ballot committee legislation mayor governor campaign delegate referendum policy amendment treaty minister coalition caucus hearing veto district lobby".split(),
    "technology": "software processor network browser database smartphone algorithm server robot keyboard encryption chip compiler update router battery display camera platform developer".split(),
    "culture": "museum novelist orchestra festival painter exhibition theater poet sculpture gallery audience premiere choir documentary author curator musician ballet concert manuscript".split(),
}
ADJECTIVES = "new old large small local national early late modest ambitious careful surprising popular unusual quiet busy costly efficient remote historic rural urban annual recent major minor bold cautious steady sudden familiar rare".split()
VERBS_PAST = "announced approved rejected delayed expanded reviewed launched criticized funded opened studied measured replaced tested defended questioned praised revised completed described".split()
VERBS = "support expand reduce improve delay review replace fund study protect build test change explain finish extend measure publish repair organize".split()
TIMES = [
    "on Monday",
    "on Tuesday",
    "last week",
    "this spring",
    "in early March",
    "over the weekend",
    "last autumn",
    "on Friday evening",
    "earlier this month",
    "in late October",
]

TEMPLATES = [
    "{person}, who leads the {org} in {city}, said the {noun} would {verb} {number} {nouns} by {year}.",
    "The {org} {verb_past} a {adj} plan for the {noun} {time}, according to {person}.",
    "Officials in {city} {verb_past} the {noun} after {number} residents asked for a {adj} {noun2}.",
    '"We want to {verb} the {noun} without hurting the {noun2}," {person} told reporters {time}.',
    "Critics argued that the {adj} {noun} cost more than the {org} had promised in {year}.",
    "{person} has spent {number} years working on the {noun} and plans to {verb} it again next year.",
    "A {adj} report from the {org} found that {number} percent of {nouns} in {city} needed repair.",
    "Supporters of the {noun} {verb_past} the decision, while {person} warned about the {adj} {noun2}.",
    "The {noun} in {city} drew {number} visitors {time}, far more than organizers expected.",
    "Residents of {city} will vote on the {noun} in {year}, and {person} expects a {adj} result.",
    "According to {person}, the {org} still has to {verb} the {noun2} before any {noun} can open.",
    "Last year the {org} {verb_past} {number} {nouns}, and this year it hopes to {verb} even more.",
    "{person} compared the {noun} in {city} with a similar {noun2} that {person2} {verb_past} in {year}.",
    "Nobody expected the {adj} {noun} to change so much, {person} admitted {time}.",
    "The {org} said it would publish the full list of {nouns} once the {noun2} is finished.",
    "In {city}, the {noun} has become a {adj} symbol of how the {org} works with local families.",
]


class ArticleWriter:
    """Writes articles of 400-900 words from templates with slots drawn from large word lists."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def person(self) -> str:
        return f"{self.rng.choice(FIRST)} {self.rng.choice(LAST)}"

    def sentence(self, topic: str) -> str:
        r, words = self.rng, TOPICS[topic]
        noun, noun2 = r.sample(words, 2)
        return r.choice(TEMPLATES).format(
            person=self.person(),
            person2=self.person(),
            org=r.choice(ORGS),
            city=r.choice(CITIES),
            noun=noun,
            noun2=noun2,
            nouns=r.choice(words) + "s",
            adj=r.choice(ADJECTIVES),
            verb=r.choice(VERBS),
            verb_past=r.choice(VERBS_PAST),
            number=r.randint(2, 950),
            year=r.randint(1995, 2017),
            time=r.choice(TIMES),
        )

    def title(self, topic: str) -> str:
        r = self.rng
        return f"{r.choice(CITIES)} {r.choice(ORGS)} {r.choice(VERBS_PAST)} {r.choice(ADJECTIVES)} {r.choice(TOPICS[topic])} plan"

    def article(self, min_words: int = 400, max_words: int = 900) -> tuple[str, list[str]]:
        """(title, paragraphs) on a random topic."""
        topic = self.rng.choice(sorted(TOPICS))
        target = self.rng.randint(min_words, max_words)
        paragraphs, words = [], 0
        while words < target:
            paragraph = " ".join(self.sentence(topic) for _ in range(self.rng.randint(3, 6)))
            paragraphs.append(paragraph)
            words += len(paragraph.split())
        return self.title(topic).capitalize(), paragraphs

    def edit(self, paragraphs: list[str], swaps: int = 4) -> list[str]:
        """A near copy: a few words replaced and one sentence added (word 5-gram Jaccard ≈ 0.85-0.95)."""
        edited = [p.split(" ") for p in paragraphs]
        for _ in range(swaps):
            words = self.rng.choice(edited)
            words[self.rng.randrange(len(words))] = self.rng.choice(ADJECTIVES)
        edited[-1].append(self.sentence(self.rng.choice(sorted(TOPICS))))
        return [" ".join(words) for words in edited]


FOREIGN = {
    "fr": [
        "Le conseil municipal s'est réuni mardi soir pour discuter du nouveau budget des bibliothèques de la ville.",
        "Plusieurs habitants ont demandé des horaires plus longs pendant les mois d'hiver, surtout pour les étudiants.",
        "Le maire a promis qu'aucune bibliothèque ne fermerait avant la fin de l'année prochaine.",
        "Les bénévoles ont réparé des centaines de livres donnés depuis le début du programme.",
        "Une historienne locale a expliqué comment la plus ancienne annexe avait été fondée par des instituteurs.",
    ],
    "de": [
        "Der Stadtrat hat am Dienstag über den neuen Haushalt für die öffentlichen Bibliotheken beraten.",
        "Mehrere Anwohner forderten längere Öffnungszeiten während der Wintermonate, vor allem für Schüler.",
        "Der Bürgermeister versprach, dass vor Ende des nächsten Jahres keine Zweigstelle geschlossen wird.",
        "Freiwillige haben seit dem Beginn des Programms Hunderte gespendeter Bücher repariert.",
        "Eine Historikerin erklärte, wie die älteste Zweigstelle von einer Gruppe von Lehrern gegründet wurde.",
    ],
    "es": [
        "El ayuntamiento se reunió el martes para hablar del nuevo presupuesto de las bibliotecas públicas.",
        "Varios vecinos pidieron horarios más largos durante los meses de invierno, sobre todo para los estudiantes.",
        "El alcalde prometió que ninguna biblioteca cerraría antes del final del próximo año.",
        "Los voluntarios han reparado cientos de libros donados desde que comenzó el programa.",
        "Una historiadora local explicó cómo la sede más antigua fue fundada por un grupo de maestros.",
    ],
}
