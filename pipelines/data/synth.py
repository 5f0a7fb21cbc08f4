"""Synthetic query-ad logs that look like production, generated in parallel by Spark.

Every value of row ``id`` comes from ``xxhash64(seed, content id, salt)``, so the same seed gives
the same rows however the work is partitioned. Nothing is generated on the driver.

Segments (market x vertical) are imbalanced: markets en-US .45, en-GB .20, en-IN .15, en-CA .12,
en-AU .08 and verticals retail .38, travel .22, finance .14, automotive .12, health .08,
education .06, so en-US/retail is ~35x en-AU/education.

Each row pairs a query (intent, optional brand, topic, suffix) with an ad (brand, topic, call to
action, a description with one spelling-sensitive phrase and a price phrase, display URL with the
market's domain). Every vertical has 5 groups of 4 related topics (destinations in one region,
neighbouring product categories, similar car models, ...). The ad's relation to the query is one of
``exact`` (same topic), ``neighbour`` (same group), ``competitor`` (query names brand A, ad is by
brand B, same topic), ``other_group`` (same vertical) and ``off_topic`` (another vertical).

Latent relevance (what a human judge would decide), first applicable rule wins:

* shared core, all segments: ``off_topic`` -> grade 0; ``other_group`` -> grade 1;
* R1 competitor brands: relevant in retail, travel and education, irrelevant in finance, health
  and automotive; in en-GB competitor ads are irrelevant in every vertical;
* R2 neighbours: a nearby destination / similar model / related treatment is relevant in travel,
  automotive and health; a neighbouring product category / product type is irrelevant in retail,
  finance and education;
* R3 spelling: in en-GB (every vertical) and en-AU retail an ad written in US spelling is
  irrelevant even on an exact match; other markets do not care;
* R4 price tier: a budget query ("cheap", "budget", "discount") with a premium ad ("luxury",
  "premium") is irrelevant in en-US and en-CA retail and travel, tolerated elsewhere;
* otherwise ``exact`` is relevant (grade 4).

Relevant rows get grade 3-4, rule-demoted rows grade 2. Judgments (25% human, 10% llm) replace the
grade by a uniform random one with probability 8% (human) / 15% (llm): label noise. Every row has
impressions (long-tailed) and clicks from a position-biased click model (examination 1/position).

Dirt (rate ``dirt``, default 3%) is spread over: exact duplicates, case/whitespace variant
duplicates, HTML entities, unicode compatibility forms (NFKC), empty and null fields, over-long
descriptions, unknown or malformed markets, negative impressions, clicks above impressions, grades
out of range and malformed dates.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from features.schema import SYNTH_TYPES

MARKETS = {"en-US": 0.45, "en-GB": 0.20, "en-IN": 0.15, "en-CA": 0.12, "en-AU": 0.08}
VERTICALS = {
    "retail": 0.38,
    "travel": 0.22,
    "finance": 0.14,
    "automotive": 0.12,
    "health": 0.08,
    "education": 0.06,
}
DOMAINS = {"en-US": ".com", "en-GB": ".co.uk", "en-IN": ".in", "en-CA": ".ca", "en-AU": ".com.au"}
CURRENCY = {"en-US": "$", "en-GB": "£", "en-IN": "₹", "en-CA": "C$", "en-AU": "A$"}


def _table(text: str) -> dict[str, list[list[str]]]:
    """Parses ``key: a | b | ...`` lines into {key: [[a, b, ...], ...]}, keys and rows as written."""
    rows: dict[str, list[list[str]]] = {}
    for line in text.strip().splitlines():
        key, items = line.split(":", 1)
        rows.setdefault(key.strip(), []).append([item.strip() for item in items.split("|")])
    return rows


# 5 groups x 4 topics per vertical, a line a group; topics in one group are neighbours.
TOPICS: dict[str, list[list[str]]] = _table("""
retail:     running shoes | trail shoes | sneakers | hiking boots
retail:     laptop | tablet | wireless headphones | smartwatch
retail:     sofa | dining table | memory foam mattress | office chair
retail:     coffee maker | blender | air fryer | stand mixer
retail:     winter jacket | slim fit jeans | rain coat | hoodie
travel:     barcelona | madrid | lisbon | seville
travel:     rome | florence | venice | milan
travel:     bangkok | phuket | bali | singapore
travel:     san francisco | los angeles | las vegas | san diego
travel:     london | edinburgh | manchester | york
finance:    credit card | travel credit card | cashback card | balance transfer card
finance:    personal loan | car loan | student loan | debt consolidation loan
finance:    mortgage | remortgage | home equity loan | first time buyer mortgage
finance:    stock trading app | index fund | retirement account | robo advisor
finance:    car insurance | home insurance | life insurance | pet insurance
automotive: toyota rav4 | honda cr-v | ford escape | mazda cx-5
automotive: toyota camry | honda accord | hyundai sonata | nissan altima
automotive: ford f-150 | ram 1500 | chevy silverado | toyota tacoma
automotive: tesla model 3 | nissan leaf | chevy bolt | hyundai ioniq 5
automotive: all season tires | brake pads | car battery | oil change
health:     dentist | teeth whitening | orthodontist | dental implants
health:     optician | contact lenses | eye test | prescription glasses
health:     gym membership | personal trainer | yoga classes | pilates studio
health:     allergy relief | pain relief | vitamin d | sleep aid
health:     physiotherapy | chiropractor | sports massage | back pain clinic
education:  spanish course | french lessons | english tutor | german classes
education:  coding bootcamp | data science course | python course | web design course
education:  online mba | nursing degree | teaching certificate | law degree
education:  sat prep | ielts prep | gre prep | gmat prep
education:  piano lessons | guitar lessons | drawing classes | photography course
""")
# 8 brands per vertical.
BRANDS: dict[str, list[str]] = {vertical: rows[0] for vertical, rows in _table("""
retail:     Nike | Adidas | Apple | Samsung | IKEA | Dyson | Marks & Spencer | Levi's
travel:     Expedia | Booking.com | Airbnb | Ryanair | easyJet | Marriott | Hilton | B&B Hotels
finance:    Chase | Barclays | HSBC | American Express | Capital One | Vanguard | Wells Fargo | Lloyd's
automotive: Toyota | Ford | Honda | AutoTrader | CarMax | Halfords | Pep Boys | Kelley Blue Book
health:     Boots | Specsavers | CVS | Walgreens | PureGym | Bupa | Aspen Dental | Holland & Barrett
education:  Coursera | Udemy | Duolingo | Kaplan | Berlitz | edX | Open University | Princeton Review
""").items()}
INTENTS = ["", "buy", "best", "cheap", "budget", "discount", "top rated", "compare", "new", "book"]
BUDGET_INTENTS = ["cheap", "budget", "discount"]
SUFFIXES = ["", "", "near me", "2026", "reviews", "deals", "online", "prices", "offers"]
# (US spelling, UK spelling) phrases: one goes into every ad description.
SPELLINGS = [
    ("Pick your favorite color", "Pick your favourite colour"),
    ("Visit our service center", "Visit our service centre"),
    ("Join our loyalty program", "Join our loyalty programme"),
    ("Browse the full catalog", "Browse the full catalogue"),
    ("Enroll today", "Enrol today"),
    ("Organize it your way", "Organise it your way"),
]
PRICE_WORDS = ["", "", "sale", "premium", "luxury", "best value", "new season"]
PREMIUM_WORDS = ["premium", "luxury"]
CTAS = ["Shop Now", "Book Today", "Official Site", "Save 20%", "Get a Quote", "Learn More",
        "Free Delivery", "Compare Options"]
RELATIONS = {"exact": 0.38, "neighbour": 0.16, "competitor": 0.14, "other_group": 0.16,
             "off_topic": 0.16}

DIRT_KINDS = (
    "duplicate",
    "case_variant",
    "html_entities",
    "unicode_forms",
    "null_query",
    "null_title",
    "empty_fields",
    "long_text",
    "bad_market",
    "negative_impressions",
    "clicks_over_impressions",
    "grade_out_of_range",
    "bad_date",
)

VERTICAL_LIST = list(VERTICALS)
GROUPS, PER_GROUP = 5, 4
TOPICS_PER_VERTICAL = GROUPS * PER_GROUP
BRANDS_PER_VERTICAL = 8


def _uniform(seed: int, row: Column, salt: str) -> Column:
    """A uniform double in [0, 1) fixed by (seed, row, salt)."""
    return F.pmod(F.xxhash64(F.lit(seed), row, F.lit(salt)), F.lit(1 << 40)) / float(1 << 40)


def _index(u: Column, n: int) -> Column:
    return F.least(F.floor(u * n), F.lit(n - 1)).cast("int")


def _pick(values: list[str], index: Column) -> Column:
    """values[index] for a 0-based index column."""
    return F.element_at(F.array(*[F.lit(v) for v in values]), index + 1)


def _weighted(weights: dict[str, float], u: Column) -> Column:
    """Index into ``weights`` (insertion order) drawn by u against the cumulative weights."""
    total = sum(weights.values())
    expr, cumulative = None, 0.0
    for i, w in enumerate(list(weights.values())[:-1]):
        cumulative += w / total
        expr = F.when(u < cumulative, i) if expr is None else expr.when(u < cumulative, i)
    return expr.otherwise(len(weights) - 1)


def clean_rows(spark: SparkSession, rows: int, seed: int, partitions: int | None = None) -> DataFrame:
    """The dirt-free log: one row per id with its latent grade (column ``_grade``) kept for tests."""
    df = spark.range(0, rows, numPartitions=partitions) if partitions else spark.range(0, rows)
    return with_clean_content(df, seed, F.col("id"))


def with_clean_content(df: DataFrame, seed: int, row: Column) -> DataFrame:
    """Adds every raw column (plus ``_grade``, ``_relation``) generated from the ``row`` id column."""
    return (
        df.transform(_draw_content, seed, row)
        .transform(_place_ad)
        .transform(_with_segment_and_query)
        .transform(_with_ad_ids, seed)
        .transform(_with_ad_copy)
        .transform(_with_latent_grade)
        .transform(_with_observations, seed, row)
        .transform(_drop_working_columns)
    )


# Working columns named ``_*_index`` are 0-based indices into the tables above (topics and brands
# counted within their vertical).
_ALL_TOPICS = [t for v in VERTICAL_LIST for group in TOPICS[v] for t in group]
_ALL_BRANDS = [b for v in VERTICAL_LIST for b in BRANDS[v]]


def _topic_name(vertical: Column, topic: Column) -> Column:
    """The text of topic ``topic`` of vertical ``vertical``."""
    return _pick(_ALL_TOPICS, vertical * TOPICS_PER_VERTICAL + topic)


def _brand_name(vertical: Column, brand: Column) -> Column:
    """The name of brand ``brand`` of vertical ``vertical``."""
    return _pick(_ALL_BRANDS, vertical * BRANDS_PER_VERTICAL + brand)


def _draw_content(df: DataFrame, seed: int, row: Column) -> DataFrame:
    """Draws each independent choice of the row's content once; later steps only combine them."""

    def u(salt: str) -> Column:
        return _uniform(seed, row, salt)

    return df.withColumns(
        {
            "_market_index": _weighted(MARKETS, u("market")),
            "_vertical_index": _weighted(VERTICALS, u("vertical")),
            "_relation_index": _weighted(RELATIONS, u("relation")),
            "_query_topic_index": _index(u("query_topic"), TOPICS_PER_VERTICAL),
            "_query_brand_index": _index(u("query_brand"), BRANDS_PER_VERTICAL),
            "_query_names_brand": u("has_query_brand") < 0.4,
            "_intent_index": _index(u("intent"), len(INTENTS)),
            "_suffix_index": _index(u("suffix"), len(SUFFIXES)),
            "_topic_shift": _index(u("k"), 3),
            "_vertical_shift": _index(u("other_vertical"), len(VERTICAL_LIST) - 1),
            "_any_ad_brand_index": _index(u("ad_brand"), BRANDS_PER_VERTICAL),
            "_spelling_index": _index(u("spelling"), len(SPELLINGS)),
            "_us_spelling": u("us_spelling") < 0.5,
            "_price_word_index": _index(u("price"), len(PRICE_WORDS)),
            "_cta_index": _index(u("cta"), len(CTAS)),
            "_creative": _index(u("creative"), 4),
            "_price_from": (F.floor(u("price_from") * 90) + 9).cast("string"),
            "_day_offset": _index(u("date"), 90),
        }
    )


def _place_ad(df: DataFrame) -> DataFrame:
    """Decides the ad's vertical, topic and brand from its relation to the query."""
    relation = _pick(list(RELATIONS), F.col("_relation_index"))
    topic, shift = F.col("_query_topic_index"), F.col("_topic_shift")
    group = F.floor(topic / PER_GROUP).cast("int")
    ad_topic = (
        F.when(relation.isin("exact", "competitor"), topic)
        .when(relation == "neighbour", group * PER_GROUP + F.pmod(topic + 1 + shift, PER_GROUP))
        .when(relation == "other_group",
              F.pmod(group + 1 + shift, GROUPS) * PER_GROUP + F.pmod(topic, PER_GROUP))
        .otherwise(topic)
    )
    vertical = F.col("_vertical_index")
    ad_vertical = F.when(
        relation == "off_topic", F.pmod(vertical + 1 + F.col("_vertical_shift"), len(VERTICAL_LIST))
    ).otherwise(vertical)
    query_brand, any_brand = F.col("_query_brand_index"), F.col("_any_ad_brand_index")
    ad_brand = (
        F.when(relation == "competitor",
               F.pmod(query_brand + 1 + F.pmod(any_brand, BRANDS_PER_VERTICAL - 1), BRANDS_PER_VERTICAL))
        .when((relation == "exact") & F.col("_query_names_brand"), query_brand)
        .otherwise(any_brand)
    )
    return df.withColumns(
        {
            "_relation": relation,
            "_query_has_brand": F.col("_query_names_brand") | (relation == "competitor"),
            "_ad_topic_index": ad_topic,
            "_ad_vertical_index": ad_vertical,
            "_ad_brand_index": ad_brand,
        }
    )


def _with_segment_and_query(df: DataFrame) -> DataFrame:
    """Adds the date, the segment and the query text: intent, brand when named, topic, suffix."""
    vertical = F.col("_vertical_index")
    intent = _pick(INTENTS, F.col("_intent_index"))
    suffix = _pick(SUFFIXES, F.col("_suffix_index"))
    query = F.concat_ws(
        " ",
        F.when(intent != "", intent),
        F.when(F.col("_query_has_brand"), F.lower(_brand_name(vertical, F.col("_query_brand_index")))),
        _topic_name(vertical, F.col("_query_topic_index")),
        F.when(suffix != "", suffix),
    )
    first_day = F.lit("2026-01-01").cast("date")
    return df.withColumns(
        {
            "event_date": F.date_format(F.date_add(first_day, F.col("_day_offset")), "yyyy-MM-dd"),
            "market": _pick(list(MARKETS), F.col("_market_index")),
            "vertical": _pick(VERTICAL_LIST, vertical),
            "query": query,
        }
    )


def _with_ad_ids(df: DataFrame, seed: int) -> DataFrame:
    """Identifies an ad by its content (the same creative is the same ad) and its advertiser by brand."""
    content = (
        "_ad_vertical_index", "_ad_topic_index", "_ad_brand_index", "_price_word_index",
        "_spelling_index", "_us_spelling", "_cta_index", "_creative",
    )
    ad_key = F.concat_ws("|", *[F.col(c) for c in content])
    brand = F.col("_ad_vertical_index") * BRANDS_PER_VERTICAL + F.col("_ad_brand_index")
    return df.withColumns(
        {
            "ad_id": F.concat(F.lit("ad-"), F.lower(F.hex(F.xxhash64(F.lit(seed), ad_key)))),
            "advertiser_id": F.concat(F.lit("adv-"), (brand + 1000).cast("string")),
        }
    )


def _with_ad_copy(df: DataFrame) -> DataFrame:
    """Writes the ad: title, description (spelling and price phrases), URL on the market's domain."""
    vertical, market = F.col("_ad_vertical_index"), F.col("_market_index")
    brand = _brand_name(vertical, F.col("_ad_brand_index"))
    topic = _topic_name(vertical, F.col("_ad_topic_index"))
    title_topic = F.initcap(topic)
    price_word = _pick(PRICE_WORDS, F.col("_price_word_index"))
    phrase = F.col("_spelling_index")
    spelling = F.when(F.col("_us_spelling"), _pick([us for us, _ in SPELLINGS], phrase)).otherwise(
        _pick([uk for _, uk in SPELLINGS], phrase)
    )
    currency = _pick([CURRENCY[m] for m in MARKETS], market)
    domain = _pick([DOMAINS[m] for m in MARKETS], market)
    slug = F.regexp_replace(F.lower(brand), "[^a-z0-9]", "")
    cta = _pick(CTAS, F.col("_cta_index"))
    return df.withColumns(
        {
            "ad_title": F.concat_ws(
                " ", brand, F.when(price_word != "", F.initcap(price_word)), title_topic, F.lit("-"), cta
            ),
            "ad_description": F.concat(
                spelling, F.lit(". "), title_topic, F.lit(" from "), currency, F.col("_price_from"),
                F.lit(". "), brand, F.lit(" - trusted by millions."),
            ),
            "display_url": F.concat(F.lit("www."), slug, domain, F.lit("/"), F.regexp_replace(topic, " ", "-")),
        }
    )


def _with_latent_grade(df: DataFrame) -> DataFrame:
    """Grades the pair as a human judge would: the rules of the module docstring, in order."""
    relation, market, vertical = F.col("_relation"), F.col("market"), F.col("vertical")
    grade = (
        F.when(relation == "off_topic", 0)
        .when(relation == "other_group", 1)
        .when(relation == "competitor",
              F.when(market == "en-GB", 2)
              .when(vertical.isin("retail", "travel", "education"), 3).otherwise(2))
        .when(relation == "neighbour",
              F.when(vertical.isin("travel", "automotive", "health"), 3).otherwise(2))
        .otherwise(4)
    )
    spelling_penalty = F.col("_us_spelling") & (
        (market == "en-GB") | ((market == "en-AU") & (vertical == "retail"))
    )
    is_budget = _pick(INTENTS, F.col("_intent_index")).isin(BUDGET_INTENTS)
    is_premium = _pick(PRICE_WORDS, F.col("_price_word_index")).isin(PREMIUM_WORDS)
    price_penalty = (
        is_budget & is_premium & market.isin("en-US", "en-CA") & vertical.isin("retail", "travel")
    )
    grade = F.when((grade >= 3) & (spelling_penalty | price_penalty), 2).otherwise(grade)
    return df.withColumn("_grade", grade.cast("int"))


def _with_observations(df: DataFrame, seed: int, row: Column) -> DataFrame:
    """Observes the row: long-tailed impressions, position-biased clicks, a noisy label on a judged fraction."""

    def u(salt: str) -> Column:
        return _uniform(seed, row, salt)

    impressions = F.floor(F.exp(u("impressions") * 7.0)).cast("long")
    position = F.round(F.lit(1.0) + u("position") * 7.0, 1)
    base_ctr = F.element_at(F.array(*[F.lit(x) for x in (0.01, 0.03, 0.06, 0.22, 0.35)]),
                            F.col("_grade") + 1)
    clicks = F.least(
        F.floor(impressions * base_ctr / position + u("clicks")).cast("long"), impressions
    )
    judge = u("judge")
    source = F.when(judge < 0.25, F.lit("human")).when(judge < 0.35, F.lit("llm"))
    noisy = F.when(source == "human", u("noise") < 0.08).when(source == "llm", u("noise") < 0.15)
    label = F.when(source.isNull(), F.lit(None)).when(noisy, _index(u("noisy_grade"), 5)).otherwise(
        F.col("_grade")
    )
    return df.withColumns(
        {
            "impressions": impressions,
            "clicks": clicks,
            "position": position,
            "label": label.cast("int"),
            "label_source": source,
        }
    )


def _drop_working_columns(df: DataFrame) -> DataFrame:
    """Drops the working columns; the latent ``_grade`` and ``_relation`` stay for checking."""
    return df.drop(*[c for c in df.columns if c.startswith("_") and c not in ("_grade", "_relation")])


def with_dirt(df: DataFrame, seed: int, dirt: float) -> DataFrame:
    """Spoils a ``dirt`` fraction of rows with one kind each (see DIRT_KINDS)."""
    row = F.col("id")

    def u(salt: str) -> Column:
        return _uniform(seed, row, "dirt:" + salt)

    kind = F.when(u("is_dirty") < dirt, _pick(list(DIRT_KINDS), _index(u("kind"), len(DIRT_KINDS))))
    variant = _index(u("variant"), 4)
    spaced_query = F.concat(F.lit("  "), F.regexp_replace(F.upper(F.col("query")), " ", "   "),
                            F.lit("\t"))
    return df.withColumns(
        {
            "query": F.when(kind == "case_variant",
                            F.when(variant < 2, spaced_query).otherwise(F.initcap(F.col("query"))))
            .when(kind == "unicode_forms",
                  F.regexp_replace(F.regexp_replace(F.col("query"), " ", "\u00a0"), "fi", "\ufb01"))
            .when(kind == "html_entities", F.regexp_replace(F.col("query"), " ", "&nbsp;"))
            .when(kind == "null_query", F.when(variant < 2, F.lit(None)).otherwise(F.lit("   ")))
            .otherwise(F.col("query")),
            "ad_title": F.when(kind == "html_entities",
                               F.regexp_replace(F.regexp_replace(F.col("ad_title"), "&", "&amp;"),
                                                "'", "&#39;"))
            .when(kind == "unicode_forms", F.regexp_replace(F.col("ad_title"), "%", "\uff05"))
            .when(kind == "null_title", F.lit(None))
            .otherwise(F.col("ad_title")),
            "ad_description": F.when(kind == "empty_fields", F.lit(""))
            .when(kind == "long_text", F.repeat(F.col("ad_description"), 40))
            .when(kind == "html_entities", F.regexp_replace(F.col("ad_description"), "&", "&amp;"))
            .otherwise(F.col("ad_description")),
            "display_url": F.when(kind == "empty_fields", F.lit(None)).otherwise(F.col("display_url")),
            "market": F.when(kind == "bad_market",
                             _pick(["unknown", "en-ZZ", "", "zz"], variant))
            .when(kind == "case_variant", F.upper(F.col("market")))
            .otherwise(F.col("market")),
            "impressions": F.when(kind == "negative_impressions", -F.col("impressions") - 1)
            .otherwise(F.col("impressions")),
            "clicks": F.when(kind == "clicks_over_impressions", F.col("impressions") + 1 + variant)
            .otherwise(F.col("clicks")),
            "label": F.when(kind == "grade_out_of_range", _pick(["7", "-1", "5", "12"], variant).cast("int"))
            .otherwise(F.col("label")),
            "label_source": F.when(kind == "grade_out_of_range", F.lit("human"))
            .otherwise(F.col("label_source")),
            "event_date": F.when(kind == "bad_date",
                                 _pick(["2026-13-45", "31/12/2025", "yesterday", ""], variant))
            .otherwise(F.col("event_date")),
            "_dirt": kind,
        }
    )


def synth_logs(
    spark: SparkSession, rows: int, seed: int = 0, dirt: float = 0.03, partitions: int | None = None
) -> DataFrame:
    """Raw logs in the raw log schema (plus ``_grade``, ``_relation`` and ``_dirt`` for checking).

    Duplicate dirt copies the previous row's content (its content id is ``id - 1``); every other
    value is a function of the row's own id, so the output does not depend on partitioning.
    """
    if rows < 1:
        raise ValueError("rows must be positive")
    base = spark.range(0, rows, numPartitions=partitions) if partitions else spark.range(0, rows)
    kind_u = _uniform(seed, F.col("id"), "dirt:is_dirty")
    kind_i = _index(_uniform(seed, F.col("id"), "dirt:kind"), len(DIRT_KINDS))
    duplicate = (kind_u < dirt) & kind_i.isin(0, 1) & (F.col("id") > 0)
    base = base.withColumn("_content", F.when(duplicate, F.col("id") - 1).otherwise(F.col("id")))
    df = with_clean_content(base, seed, F.col("_content"))
    df = with_dirt(df, seed, dirt)
    return df.select(
        *[F.col(c).cast(t) for c, t in SYNTH_TYPES.items()], "_grade", "_relation", "_dirt"
    )


def write_logs(df: DataFrame, output: str, fmt: str = "parquet") -> None:
    """Writes the raw columns only (the latent ones stay out of the logs)."""
    raw = df.select(*SYNTH_TYPES)
    writer = raw.write.mode("overwrite")
    if fmt == "parquet":
        writer.parquet(output)
    elif fmt == "json":
        writer.json(output)
    elif fmt == "csv":
        writer.option("header", True).csv(output)
    else:
        raise ValueError(f"unknown format {fmt}")
