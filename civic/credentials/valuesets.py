"""Code lists used by the credential schemas, with English and Korean display names.

- EU Digital COVID Certificate value sets of the eHealth Network (ehn-dcc-development/
  eu-dcc-valuesets, Apache-2.0, as of its last release in July 2023): disease or agent
  targeted (``tg``), vaccine or prophylaxis (``vp``), vaccine medicinal product (``mp``),
  marketing authorisation holder or manufacturer (``ma``) and country codes (``co``: ISO 3166-1
  alpha-2 plus ``XK``). Deprecated codes stay in the sets: certificates issued with them remain
  readable. English names are the value sets' display names; Korean names are ours.
- Korean first-level administrative divisions (17 metropolitan cities and provinces) and the
  25 autonomous districts (gu) of Seoul, stored under their Revised Romanization names.

The JSON Schemas in ``schemas/`` repeat these codes as ``enum`` lists; a unit test keeps the
two in step.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

Names = MappingProxyType[str, tuple[str, str]]
"""code -> (English name, Korean name)."""


def _names(table: dict[str, tuple[str, str]]) -> Names:
    return MappingProxyType(table)


DISEASE_AGENT_TARGETED: Final = _names({"840539006": ("COVID-19", "코로나바이러스감염증-19")})

VACCINE_PROPHYLAXIS: Final = _names(
    {
        "1119305005": ("SARS-CoV-2 antigen vaccine", "SARS-CoV-2 항원 백신"),
        "1119349007": ("SARS-CoV-2 mRNA vaccine", "SARS-CoV-2 mRNA 백신"),
        "J07BX03": ("covid-19 vaccines (deprecated)", "코로나19 백신 (폐지된 코드)"),
        "1162643001": (
            "SARS-CoV-2 recombinant spike protein antigen vaccine",
            "SARS-CoV-2 재조합 스파이크 단백질 항원 백신",
        ),
        "1157024006": (
            "Inactivated whole SARS-CoV-2 antigen vaccine",
            "불활화 SARS-CoV-2 전체 항원 백신",
        ),
        "29061000087103": (
            "COVID-19 non-replicating viral vector vaccine",
            "코로나19 비복제 바이러스 벡터 백신",
        ),
        "28531000087107": ("COVID-19 vaccine", "코로나19 백신"),
        "30141000087107": (
            "SARS-CoV-2 virus-like particle antigen vaccine",
            "SARS-CoV-2 바이러스 유사 입자 항원 백신",
        ),
        "1187593009": (
            "SARS-CoV-2 DNA plasmid encoding spike protein vaccine",
            "SARS-CoV-2 스파이크 단백질 DNA 플라스미드 백신",
        ),
    }
)

VACCINE_MEDICINAL_PRODUCT: Final = _names(
    {
        "EU/1/20/1528": ("Comirnaty", "코미나티"),
        "EU/1/20/1507": ("Spikevax", "스파이크박스"),
        "EU/1/21/1529": ("Vaxzevria", "박스제브리아"),
        "EU/1/20/1525": ("Jcovden", "젠코브덴 (얀센)"),
        "CVnCoV": ("CVnCoV", "CVnCoV"),
        "NVX-CoV2373": ("NVX-CoV2373 (deprecated)", "NVX-CoV2373 (폐지된 코드)"),
        "Sputnik-V": ("Sputnik-V", "스푸트니크 V"),
        "Convidecia": ("Convidecia", "콘비데시아"),
        "EpiVacCorona": ("EpiVacCorona", "에피박코로나"),
        "BBIBP-CorV": ("BBIBP-CorV", "BBIBP-CorV (시노팜)"),
        "Inactivated-SARS-CoV-2-Vero-Cell": (
            "Inactivated SARS-CoV-2 (Vero Cell) (deprecated)",
            "불활화 SARS-CoV-2 (베로 세포) (폐지된 코드)",
        ),
        "CoronaVac": ("CoronaVac", "코로나백 (시노백)"),
        "Covaxin": ("Covaxin", "코백신"),
        "Covishield": ("Covishield", "코비실드"),
        "Covid-19-recombinant": ("Covid-19 (recombinant)", "코로나19 (재조합)"),
        "R-COVI": ("R-COVI", "R-COVI"),
        "CoviVac": ("CoviVac", "코비박"),
        "Sputnik-Light": ("Sputnik Light", "스푸트니크 라이트"),
        "Hayat-Vax": ("Hayat-Vax", "하야트-박스"),
        "Abdala": ("Abdala", "압달라"),
        "WIBP-CorV": ("WIBP-CorV", "WIBP-CorV"),
        "MVC-COV1901": ("MVC COVID-19 vaccine", "MVC 코로나19 백신"),
        "EU/1/21/1618": ("Nuvaxovid", "뉴백소비드"),
        "Covovax": ("Covovax", "코보백스"),
        "Vidprevtyn": ("Vidprevtyn (deprecated)", "비드프레브틴 (폐지된 코드)"),
        "VLA2001": ("VLA2001 (deprecated)", "VLA2001 (폐지된 코드)"),
        "EpiVacCorona-N": ("EpiVacCorona-N", "에피박코로나-N"),
        "Sputnik-M": ("Sputnik M", "스푸트니크 M"),
        "Covid-19-adsorvida-inativada": (
            "Vacina adsorvida covid-19 (inativada)",
            "흡착 불활화 코로나19 백신 (부탄탄)",
        ),
        "NVSI-06-08": ("NVSI-06-08", "NVSI-06-08"),
        "YS-SC2-010": ("YS-SC2-010", "YS-SC2-010"),
        "SCTV01C": ("SCTV01C", "SCTV01C"),
        "Covifenz": ("Covifenz", "코비펜즈"),
        "AZD2816": ("AZD2816", "AZD2816"),
        "Soberana-02": ("Soberana 02", "소베라나 02"),
        "Soberana-Plus": ("Soberana Plus", "소베라나 플러스"),
        "EU/1/21/1624": ("COVID-19 Vaccine Valneva", "발네바 코로나19 백신"),
        "EU/1/21/1580": ("VidPrevtyn Beta", "비드프레브틴 베타"),
        "EU/1/22/1709": ("Bimervax", "비머백스"),
    }
)

VACCINE_MAH_MANF: Final = _names(
    {
        "ORG-100001699": ("AstraZeneca AB", "아스트라제네카"),
        "ORG-100030215": ("Biontech Manufacturing GmbH", "바이오엔테크"),
        "ORG-100001417": ("Janssen-Cilag International", "얀센-실락 인터내셔널"),
        "ORG-100031184": ("Moderna Biotech Spain S.L.", "모더나 바이오텍 스페인"),
        "ORG-100006270": ("Curevac AG", "큐어백"),
        "ORG-100013793": ("CanSino Biologics", "칸시노 바이오로직스"),
        "ORG-100020693": (
            "China Sinopharm International Corp. - Beijing location",
            "중국 시노팜 인터내셔널 (베이징)",
        ),
        "ORG-100010771": (
            "Sinopharm Weiqida Europe Pharmaceutical s.r.o. - Prague location",
            "시노팜 웨이치다 유럽 (프라하)",
        ),
        "ORG-100024420": (
            "Sinopharm Zhijun (Shenzhen) Pharmaceutical Co. Ltd. - Shenzhen location",
            "시노팜 즈쥔 제약 (선전)",
        ),
        "ORG-100032020": ("Novavax CZ a.s.", "노바백스 CZ"),
        "Gamaleya-Research-Institute": ("Gamaleya Research Institute", "가말레야 연구소"),
        "Vector-Institute": ("Vector Institute", "벡터 연구소"),
        "Sinovac-Biotech": ("Sinovac Biotech", "시노백 바이오텍"),
        "Bharat-Biotech": ("Bharat Biotech", "바랏 바이오텍"),
        "ORG-100001981": ("Serum Institute Of India Private Limited", "인도 혈청연구소"),
        "Fiocruz": ("Fiocruz", "오스바우두 크루스 재단 (Fiocruz)"),
        "ORG-100007893": ("R-Pharm CJSC", "R-팜"),
        "Chumakov-Federal-Scientific-Center": (
            "Chumakov Federal Scientific Center for Research and Development of"
            " Immune-and-Biological Products",
            "추마코프 연방 면역생물학제제 연구개발 과학센터",
        ),
        "ORG-100023050": ("Gulf Pharmaceutical Industries", "걸프 제약"),
        "CIGB": ("Center for Genetic Engineering and Biotechnology", "유전공학생명공학센터 (쿠바)"),
        "Sinopharm-WIBP": (
            "Sinopharm - Wuhan Institute of Biological Products",
            "시노팜 우한 생물제품연구소",
        ),
        "ORG-100033914": ("Medigen Vaccine Biologics Corporation", "메디젠 백신 바이오로직스"),
        "ORG-100000788": ("Sanofi Pasteur", "사노피 파스퇴르"),
        "ORG-100036422": ("Valneva France", "발네바 프랑스"),
        "Instituto-Butantan": ("Instituto Butantan", "부탄탄 연구소"),
        "NVSI": ("National Vaccine and Serum Institute, China", "중국 국가백신혈청연구소"),
        "Yisheng-Biopharma": ("Yisheng Biopharma", "이성 바이오파마"),
        "ORG-100026614": ("Sinocelltech Ltd.", "시노셀테크"),
        "ORG-100008549": ("Medicago Inc.", "메디카고"),
        "Finlay-Institute": ("Finlay Institute of Vaccines", "핀레이 백신 연구소"),
        "ORG-100036914": ("Hipra Human Health S.L.", "히프라 휴먼 헬스"),
    }
)

_COUNTRY_CODES_TEXT = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
    BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW
    GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY
    KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
    MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG
    TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM
    ZW XK
"""
COUNTRY_CODES: Final[tuple[str, ...]] = tuple(_COUNTRY_CODES_TEXT.split())
"""The DCC ``country-2-codes`` value set: ISO 3166-1 alpha-2 and the user-assigned ``XK``."""

COUNTRY_NAMES: Final = _names(
    {
        "KR": ("Republic of Korea", "대한민국"),
        "US": ("United States", "미국"),
        "JP": ("Japan", "일본"),
        "CN": ("China", "중국"),
        "TW": ("Taiwan", "대만"),
        "HK": ("Hong Kong", "홍콩"),
        "MN": ("Mongolia", "몽골"),
        "VN": ("Viet Nam", "베트남"),
        "PH": ("Philippines", "필리핀"),
        "TH": ("Thailand", "태국"),
        "ID": ("Indonesia", "인도네시아"),
        "MY": ("Malaysia", "말레이시아"),
        "SG": ("Singapore", "싱가포르"),
        "IN": ("India", "인도"),
        "UZ": ("Uzbekistan", "우즈베키스탄"),
        "KZ": ("Kazakhstan", "카자흐스탄"),
        "AU": ("Australia", "호주"),
        "NZ": ("New Zealand", "뉴질랜드"),
        "CA": ("Canada", "캐나다"),
        "MX": ("Mexico", "멕시코"),
        "BR": ("Brazil", "브라질"),
        "GB": ("United Kingdom", "영국"),
        "IE": ("Ireland", "아일랜드"),
        "DE": ("Germany", "독일"),
        "FR": ("France", "프랑스"),
        "IT": ("Italy", "이탈리아"),
        "ES": ("Spain", "스페인"),
        "PT": ("Portugal", "포르투갈"),
        "NL": ("Netherlands", "네덜란드"),
        "BE": ("Belgium", "벨기에"),
        "AT": ("Austria", "오스트리아"),
        "CH": ("Switzerland", "스위스"),
        "SE": ("Sweden", "스웨덴"),
        "NO": ("Norway", "노르웨이"),
        "DK": ("Denmark", "덴마크"),
        "FI": ("Finland", "핀란드"),
        "PL": ("Poland", "폴란드"),
        "CZ": ("Czechia", "체코"),
        "GR": ("Greece", "그리스"),
        "RU": ("Russian Federation", "러시아"),
        "TR": ("Türkiye", "튀르키예"),
        "IL": ("Israel", "이스라엘"),
        "AE": ("United Arab Emirates", "아랍에미리트"),
        "SA": ("Saudi Arabia", "사우디아라비아"),
        "EG": ("Egypt", "이집트"),
        "ZA": ("South Africa", "남아프리카 공화국"),
    }
)
"""Display names for the countries a Korean verifier meets most; other codes display as the
code itself."""

REGIONS: Final = _names(
    {
        "Seoul": ("Seoul", "서울특별시"),
        "Busan": ("Busan", "부산광역시"),
        "Daegu": ("Daegu", "대구광역시"),
        "Incheon": ("Incheon", "인천광역시"),
        "Gwangju": ("Gwangju", "광주광역시"),
        "Daejeon": ("Daejeon", "대전광역시"),
        "Ulsan": ("Ulsan", "울산광역시"),
        "Sejong": ("Sejong", "세종특별자치시"),
        "Gyeonggi-do": ("Gyeonggi Province", "경기도"),
        "Gangwon-do": ("Gangwon State", "강원특별자치도"),
        "Chungcheongbuk-do": ("North Chungcheong Province", "충청북도"),
        "Chungcheongnam-do": ("South Chungcheong Province", "충청남도"),
        "Jeonbuk-do": ("Jeonbuk State", "전북특별자치도"),
        "Jeollanam-do": ("South Jeolla Province", "전라남도"),
        "Gyeongsangbuk-do": ("North Gyeongsang Province", "경상북도"),
        "Gyeongsangnam-do": ("South Gyeongsang Province", "경상남도"),
        "Jeju-do": ("Jeju Province", "제주특별자치도"),
    }
)
"""The 17 first-level divisions. Metropolitan cities go without their ``-si`` suffix (as the
brief's ``"Seoul"``); provinces keep ``-do`` (Jeonbuk and Gangwon under their 2023-2024
special self-governing names)."""

SEOUL_DISTRICTS: Final = _names(
    {
        "Jongno-gu": ("Jongno-gu", "종로구"),
        "Jung-gu": ("Jung-gu", "중구"),
        "Yongsan-gu": ("Yongsan-gu", "용산구"),
        "Seongdong-gu": ("Seongdong-gu", "성동구"),
        "Gwangjin-gu": ("Gwangjin-gu", "광진구"),
        "Dongdaemun-gu": ("Dongdaemun-gu", "동대문구"),
        "Jungnang-gu": ("Jungnang-gu", "중랑구"),
        "Seongbuk-gu": ("Seongbuk-gu", "성북구"),
        "Gangbuk-gu": ("Gangbuk-gu", "강북구"),
        "Dobong-gu": ("Dobong-gu", "도봉구"),
        "Nowon-gu": ("Nowon-gu", "노원구"),
        "Eunpyeong-gu": ("Eunpyeong-gu", "은평구"),
        "Seodaemun-gu": ("Seodaemun-gu", "서대문구"),
        "Mapo-gu": ("Mapo-gu", "마포구"),
        "Yangcheon-gu": ("Yangcheon-gu", "양천구"),
        "Gangseo-gu": ("Gangseo-gu", "강서구"),
        "Guro-gu": ("Guro-gu", "구로구"),
        "Geumcheon-gu": ("Geumcheon-gu", "금천구"),
        "Yeongdeungpo-gu": ("Yeongdeungpo-gu", "영등포구"),
        "Dongjak-gu": ("Dongjak-gu", "동작구"),
        "Gwanak-gu": ("Gwanak-gu", "관악구"),
        "Seocho-gu": ("Seocho-gu", "서초구"),
        "Gangnam-gu": ("Gangnam-gu", "강남구"),
        "Songpa-gu": ("Songpa-gu", "송파구"),
        "Gangdong-gu": ("Gangdong-gu", "강동구"),
    }
)

PROGRAMMES: Final = _names(
    {
        "seoul-youth-allowance-2024": ("Seoul Youth Allowance 2024", "2024년 서울시 청년수당"),
        "seoul-youth-allowance-2025": ("Seoul Youth Allowance 2025", "2025년 서울시 청년수당"),
        "seoul-youth-allowance-2026": ("Seoul Youth Allowance 2026", "2026년 서울시 청년수당"),
    }
)
"""Display names of the yearly Seoul Youth Allowance rounds (서울시 청년수당)."""

ALLOWANCE_STATUS: Final = _names(
    {
        "active": ("Active", "지급 중"),
        "suspended": ("Suspended", "지급 정지"),
        "ended": ("Ended", "지급 종료"),
    }
)
