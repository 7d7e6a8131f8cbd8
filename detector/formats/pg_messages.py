"""PostgreSQL's messages in the server's language (``lc_messages``), read as English.

initdb sets ``lc_messages`` from the machine's locale. stderr and csvlog then print a
record's severity translated (``日志``, ``FEHLER``; jsonlog keeps English), stderr its
followers too (``语句:`` for ``STATEMENT:``), and every output the text of the
connection lines stderr names sessions by (``Verbindung autorisiert: Benutzer=...``).
pgAudit's own ``AUDIT:`` records are never translated.

The tables are PostgreSQL 15's translations, printed by ``scripts/pg_translations.py``
from its message catalogues and checked against those installed by
``tests/formats/test_pg_messages.py``. A refused login's reason is read too: it names
the account that tried.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

import polars as pl

# Each translated severity, and follower (its text before ":  "), and the name it stands for.
SEVERITY_NAMES: Final = {
    "LOGG": "LOG", "ЗАПИСУВАННЯ": "LOG", "СООБЩЕНИЕ": "LOG", "ჟურნალი": "LOG", "日志": "LOG",
    "日誌": "LOG", "로그": "LOG",
    "ERREUR": "ERROR", "ERRORE": "ERROR", "FEHLER": "ERROR", "FEL": "ERROR", "ОШИБКА": "ERROR",
    "ПОМИЛКА": "ERROR", "შეცდომა": "ERROR", "錯誤": "ERROR", "错误": "ERROR", "오류": "ERROR",
    "FATALE": "FATAL", "FATALT": "FATAL", "ВАЖНО": "FATAL", "ФАТАЛЬНО": "FATAL",
    "ფატალური": "FATAL", "致命錯誤": "FATAL", "致命错误": "FATAL", "치명적오류": "FATAL",
    "PANICO": "PANIC", "PANIK": "PANIC", "ПАНІКА": "PANIC", "ПАНИКА": "PANIC",
    "პანიკა": "PANIC", "嚴重錯誤": "PANIC", "灾难性错误": "PANIC", "손상": "PANIC",
    "ATTENTION": "WARNING", "ATTENZIONE": "WARNING", "VARNING": "WARNING", "WARNUNG": "WARNING",
    "ПОПЕРЕДЖЕННЯ": "WARNING", "ПРЕДУПРЕЖДЕНИЕ": "WARNING", "გაფრთხილება": "WARNING",
    "警告": "WARNING", "경고": "WARNING",
    "HINWEIS": "NOTICE", "NOTIFICA": "NOTICE", "NOTIS": "NOTICE", "ЗАМЕЧАНИЕ": "NOTICE",
    "ПОВІДОМЛЕННЯ": "NOTICE", "注意": "NOTICE", "알림": "NOTICE",
    "ІНФОРМАЦІЯ": "INFO", "ИНФОРМАЦИЯ": "INFO", "ინფორმაცია": "INFO", "信息": "INFO",
    "資訊": "INFO", "정보": "INFO",
    "НАЛАГОДЖЕННЯ": "DEBUG", "ОТЛАДКА": "DEBUG", "გამართვა": "DEBUG", "调试": "DEBUG",
    "除錯": "DEBUG", "디버그": "DEBUG",
    "DETALJ": "DETAIL", "DETALLE": "DETAIL", "DETTAGLI": "DETAIL", "DÉTAIL": "DETAIL",
    "ВІДОМОСТІ": "DETAIL", "ПОДРОБНОСТИ": "DETAIL", "დეტალები": "DETAIL", "詳情": "DETAIL",
    "詳細": "DETAIL", "详情": "DETAIL", "상세정보": "DETAIL",
    "ASTUCE ": "HINT", "SUGGERIMENTO": "HINT", "TIPP": "HINT", "TIPS": "HINT",
    "ПОДСКАЗКА": "HINT", "УКАЗІВКА": "HINT", "მინიშნება": "HINT", "ヒント": "HINT", "提示": "HINT",
    "힌트": "HINT",
    "ANFRAGE": "QUERY", "CONSULTA": "QUERY", "FRÅGA": "QUERY", "REQUÊTE ": "QUERY",
    "ЗАПИТ": "QUERY", "ЗАПРОС": "QUERY", "მოთხოვნა": "QUERY", "問い合わせ": "QUERY", "查詢": "QUERY",
    "查询": "QUERY",
    "CONTESTO": "CONTEXT", "CONTEXTE ": "CONTEXT", "CONTEXTO": "CONTEXT", "KONTEXT": "CONTEXT",
    "ZUSAMMENHANG": "CONTEXT", "КОНТЕКСТ": "CONTEXT", "კონტექსტი": "CONTEXT", "上下文": "CONTEXT",
    "文脈": "CONTEXT", "내용": "CONTEXT",
    "ANWEISUNG": "STATEMENT", "INSTRUCTION ": "STATEMENT", "ISTRUZIONE": "STATEMENT",
    "SATS": "STATEMENT", "SENTENCIA": "STATEMENT", "ІНСТРУКЦІЯ": "STATEMENT",
    "ОПЕРАТОР": "STATEMENT", "ოპერატორი": "STATEMENT", "文": "STATEMENT", "语句": "STATEMENT",
    "陳述式": "STATEMENT", "명령 구문": "STATEMENT",
}  # fmt: skip
# The lines that follow a record in stderr, with its details, and PostgreSQL's own names
# of the severities (DEBUG1-5 print as DEBUG) and of them.
FOLLOWERS: Final = ("DETAIL", "HINT", "QUERY", "CONTEXT", "LOCATION", "STATEMENT")
SEVERITIES: Final = (
    "DEBUG",
    "INFO",
    "NOTICE",
    "WARNING",
    "ERROR",
    "LOG",
    "FATAL",
    "PANIC",
    *FOLLOWERS,
)


# A refused login's message (FATAL) in each translation, as a regular expression, and the
# English message it stands for, filled with its groups (${1}: the first).
REFUSALS: Final = (
    ("^Passwort-Authentifizierung für Benutzer »(.*)« fehlgeschlagen$", "password authentication failed for user \"${1}\""),  # de
    ("^Rolle »(.*)« existiert nicht$", "role \"${1}\" does not exist"),  # de
    ("^Rolle »(.*)« hat keine Berechtigung zum Einloggen$", "role \"${1}\" is not permitted to log in"),  # de
    ("^kein pg_hba\\.conf-Eintrag für Host »(.*?)«, Benutzer »(.*?)«, Datenbank »(.*?)«, (.*)$", "no pg_hba.conf entry for host \"${1}\", user \"${2}\", database \"${3}\", ${4}"),  # de
    ("^Datenbank »(.*)« existiert nicht$", "database \"${1}\" does not exist"),  # de
    ("^la autentificación password falló para el usuario «(.*)»$", "password authentication failed for user \"${1}\""),  # es
    ("^no existe el rol «(.*)»$", "role \"${1}\" does not exist"),  # es
    ("^al rol «(.*)» no se le permite conectarse$", "role \"${1}\" is not permitted to log in"),  # es
    ("^no hay una línea en pg_hba\\.conf para «(.*?)», usuario «(.*?)», base de datos «(.*?)», (.*)$", "no pg_hba.conf entry for host \"${1}\", user \"${2}\", database \"${3}\", ${4}"),  # es
    ("^no existe la base de datos «(.*)»$", "database \"${1}\" does not exist"),  # es
    ("^authentification par mot de passe échouée pour l'utilisateur  « (.*) »$", "password authentication failed for user \"${1}\""),  # fr
    ("^le rôle « (.*) » n'existe pas$", "role \"${1}\" does not exist"),  # fr
    ("^le rôle « (.*) » n'est pas autorisé à se connecter$", "role \"${1}\" is not permitted to log in"),  # fr
    ("^aucune entrée dans pg_hba\\.conf pour l'hôte « (.*?) », utilisateur « (.*?) »,\nbase de données « (.*?) », (.*)$", "no pg_hba.conf entry for host \"${1}\", user \"${2}\", database \"${3}\", ${4}"),  # fr
    ("^la base de données « (.*) » n'existe pas$", "database \"${1}\" does not exist"),  # fr
    ("^autenticazione con password fallita per l'utente \"(.*)\"$", "password authentication failed for user \"${1}\""),  # it
    ("^il ruolo \"(.*)\" non esiste$", "role \"${1}\" does not exist"),  # it
    ("^al ruolo \"(.*)\" non è consentito effettuare il login$", "role \"${1}\" is not permitted to log in"),  # it
    ("^nessuna voce in pg_hba\\.conf per l'host \"(.*?)\", utente \"(.*?)\", database \"(.*?)\", (.*)$", "no pg_hba.conf entry for host \"${1}\", user \"${2}\", database \"${3}\", ${4}"),  # it
    ("^il database \"(.*)\" non esiste$", "database \"${1}\" does not exist"),  # it
    ("^ユーザー\"(.*)\"のパスワード認証に失敗しました$", "password authentication failed for user \"${1}\""),  # ja
    ("^ロール\"(.*)\"は存在しません$", "role \"${1}\" does not exist"),  # ja
    ("^ロール\"(.*)\"はログインが許可されません$", "role \"${1}\" is not permitted to log in"),  # ja
    ("^pg_hba\\.conf にホスト\"(.*?)\"、ユーザー\"(.*?)\"、データベース\"(.*?), (.*)用のエントリがありません$", "no pg_hba.conf entry for host \"${1}\", user \"${2}\", database \"${3}\", ${4}"),  # ja
    ("^データベース\"(.*)\"は存在しません$", "database \"${1}\" does not exist"),  # ja
    ("^პაროლით ავთენტიფიკაცია მომხმარებლისთვის \"(.*)\" ვერ მოხერხდა$", "password authentication failed for user \"${1}\""),  # ka
    ("^როლი არ არსებობს: \"(.*)\"$", "role \"${1}\" does not exist"),  # ka
    ("^როლს შესვლის უფლება არ აქვს: (.*)$", "role \"${1}\" is not permitted to log in"),  # ka
    ("^pg_hba\\.conf-ში ჩანაწერი ჰოსტისთვის \"(.*?)\" მომხმარებელი \"(.*?)\", ბაზა \"(.*?)\", (.*) აღმოჩენილი არაა$", "no pg_hba.conf entry for host \"${1}\", user \"${2}\", database \"${3}\", ${4}"),  # ka
    ("^მონაცემთა ბაზა \"(.*)\" არ არსებობს$", "database \"${1}\" does not exist"),  # ka
    ("^사용자 \"(.*)\"의 password 인증을 실패했습니다$", "password authentication failed for user \"${1}\""),  # ko
    ("^\"(.*)\" 롤\\(role\\) 없음$", "role \"${1}\" does not exist"),  # ko
    ("^\"(.*)\" 롤은 접속을 허용하지 않음$", "role \"${1}\" is not permitted to log in"),  # ko
    ("^호스트 \"(.*?)\", 사용자 \"(.*?)\", 데이터베이스 \"(.*?)\", (.*) 연결에 대한 설정이 pg_hba\\.conf 파일에 없습니다\\.$", "no pg_hba.conf entry for host \"${1}\", user \"${2}\", database \"${3}\", ${4}"),  # ko
    ("^\"(.*)\" 데이터베이스 없음$", "database \"${1}\" does not exist"),  # ko
    ("^пользователь \"(.*)\" не прошёл проверку подлинности \\(по паролю\\)$", "password authentication failed for user \"${1}\""),  # ru
    ("^роль \"(.*)\" не существует$", "role \"${1}\" does not exist"),  # ru
    ("^для роли \"(.*)\" вход запрещён$", "role \"${1}\" is not permitted to log in"),  # ru
    ("^в pg_hba\\.conf нет записи для компьютера \"(.*?)\", пользователя \"(.*?)\", базы \"(.*?)\", (.*)$", "no pg_hba.conf entry for host \"${1}\", user \"${2}\", database \"${3}\", ${4}"),  # ru
    ("^база данных \"(.*)\" не существует$", "database \"${1}\" does not exist"),  # ru
    ("^Lösenordsautentisering misslyckades för användare \"(.*)\"$", "password authentication failed for user \"${1}\""),  # sv
    ("^rollen \"(.*)\" finns inte$", "role \"${1}\" does not exist"),  # sv
    ("^roll \"(.*)\" tillåts inte logga in$", "role \"${1}\" is not permitted to log in"),  # sv
    ("^ingen rad i pg_hba\\.conf för värd \"(.*?)\", användare \"(.*?)\", databas \"(.*?)\", (.*)$", "no pg_hba.conf entry for host \"${1}\", user \"${2}\", database \"${3}\", ${4}"),  # sv
    ("^databasen \"(.*)\" existerar inte$", "database \"${1}\" does not exist"),  # sv
    ("^користувач \"(.*)\" не пройшов автентифікацію за допомогою пароля$", "password authentication failed for user \"${1}\""),  # uk
    ("^роль \"(.*)\" не існує$", "role \"${1}\" does not exist"),  # uk
    ("^для ролі \"(.*)\" вхід не дозволений$", "role \"${1}\" is not permitted to log in"),  # uk
    ("^в pg_hba\\.conf немає запису для хосту \"(.*?)\", користувача \"(.*?)\", бази даних \"(.*?)\", (.*)$", "no pg_hba.conf entry for host \"${1}\", user \"${2}\", database \"${3}\", ${4}"),  # uk
    ("^бази даних \"(.*)\" не існує$", "database \"${1}\" does not exist"),  # uk
    ("^用户 \"(.*)\" 的密码认证失败$", "password authentication failed for user \"${1}\""),  # zh_CN
    ("^角色 \"(.*)\" 不存在$", "role \"${1}\" does not exist"),  # zh_CN
    ("^不允许角色 \"(.*)\" 进行登录$", "role \"${1}\" is not permitted to log in"),  # zh_CN
    ("^没有适用于主机 \"(.*?)\", 用户 \"(.*?)\", 数据库 \"(.*?)\", (.*) 的 pg_hba\\.conf 条目$", "no pg_hba.conf entry for host \"${1}\", user \"${2}\", database \"${3}\", ${4}"),  # zh_CN
    ("^数据库 \"(.*)\" 不存在$", "database \"${1}\" does not exist"),  # zh_CN
    ("^密碼驗證使用者 \"(.*)\" 失敗$", "password authentication failed for user \"${1}\""),  # zh_TW
    ("^角色 \"(.*)\" 不存在$", "role \"${1}\" does not exist"),  # zh_TW
    ("^不允許角色 \"(.*)\" 登入$", "role \"${1}\" is not permitted to log in"),  # zh_TW
    ("^沒有主機 \"(.*?)\", 使用者 \"(.*?)\", 資料庫 \"(.*?)\", (.*) 適用的 pg_hba\\.conf 項目$", "no pg_hba.conf entry for host \"${1}\", user \"${2}\", database \"${3}\", ${4}"),  # zh_TW
    ("^資料庫 \"(.*)\" 不存在$", "database \"${1}\" does not exist"),  # zh_TW
)  # fmt: skip


class Pieces(NamedTuple):
    """A translation's pieces of the connection lines: the text before each ``%s``."""

    authorized: str  # connection authorized: user=
    replication: str  # replication connection authorized: user=
    database: str  #  database=
    application: str  #  application_name=
    host: str  # connection received: host=
    disconnection: str  # disconnection: session time: (up to the time)
    command: str  # received replication command:
    port: str  #  port=


ENGLISH: Final = Pieces(
    authorized="connection authorized: user=",
    replication="replication connection authorized: user=",
    database=" database=",
    application=" application_name=",
    host="connection received: host=",
    disconnection="disconnection: session time: ",
    command="received replication command: ",
    port=" port=",
)
CONNECTION_PIECES: Final = (
    Pieces(  # de
        authorized="Verbindung autorisiert: Benutzer=",
        replication="Replikationsverbindung autorisiert: Benutzer=",
        database=" Datenbank=",
        application=" application_name=",
        host="Verbindung empfangen: Host=",
        disconnection="Verbindungsende: Sitzungszeit: ",
        command="Replikationsbefehl empfangen: ",
        port=" Port=",
    ),
    Pieces(  # es
        authorized="conexión autorizada: usuario=",
        replication="conexión de replicación autorizada: usuario=",
        database=" base_de_datos=",
        application=" nombre_de_aplicación=",
        host="conexión recibida: host=",
        disconnection="desconexión: duración de sesión: ",
        command="se recibió orden de replicación: ",
        port=" port=",
    ),
    Pieces(  # fr
        authorized="connexion autorisée : utilisateur=",
        replication="connexion de réplication autorisée : utilisateur=",
        database=" base de données ",
        application=" application_name=",
        host="connexion reçue : hôte=",
        disconnection="déconnexion : durée de la session : ",
        command="commande de réplication reçu : ",
        port=" port=",
    ),
    Pieces(  # it
        authorized="connessione autorizzata: utente=",
        replication="connessione di replica autorizzata: utente=",
        database=" database ",
        application=" application_name=",
        host="connessione ricevuta: host=",
        disconnection="disconnessione: tempo della sessione: ",
        command="ricevuto comando di replica: ",
        port=" porta=",
    ),
    Pieces(  # ja
        authorized="接続の認証完了: ユーザー=",
        replication="レプリケーション接続の認証完了: ユーザー=",
        database=" データベース=",
        application=" application_name=",
        host="接続を受け付けました: ホスト=",
        disconnection="接続を切断: セッション時間: ",
        command="レプリケーションコマンドを受信しました: ",
        port=" ポート番号=",
    ),
    Pieces(  # ka
        authorized="შეერთება ავტორიზებულია: მომხმარებელი=",
        replication="რეპლიკაციის შეერთება ავტორიზებულია: მომხმარებელი=",
        database=" ბაზა=",
        application=" აპლიკაციის_სახელი=",
        host="შემოსული დაკავშირება: ჰოსტი=",
        disconnection="disconnection: session time: ",
        command="მიღებულია რეპლიკაციის ბრძანება: ",
        port=" პორტი=",
    ),
    Pieces(  # ko
        authorized="연결 인증: user=",
        replication="복제 연결 인증: user=",
        database=" database=",
        application=" application_name=",
        host="접속 수락: host=",
        disconnection="연결종료: 세션 시간: ",
        command="수신된 복제 명령: ",
        port=" port=",
    ),
    Pieces(  # ru
        authorized="подключение авторизовано: пользователь=",
        replication="подключение для репликации авторизовано: пользователь=",
        database=" база=",
        application=" приложение=",
        host="принято подключение: узел=",
        disconnection="отключение: время сеанса: ",
        command="получена команда репликации: ",
        port=" порт=",
    ),
    Pieces(  # sv
        authorized="anslutning auktoriserad: användare=",
        replication="replikeringsanslutning auktoriserad: användare=",
        database="databas=",
        application=" applikationsnamn=",
        host="ansluting mottagen: värd=",
        disconnection="nedkoppling: sessionstid: ",
        command="tog emot replikeringskommando: ",
        port=" port=",
    ),
    Pieces(  # uk
        authorized="підключення авторизовано: користувач=",
        replication="підключення для реплікації авторизовано: користувач=",
        database=" database=",
        application=" application_name=",
        host="з'єднання отримано: хост=",
        disconnection="відключення: час сеансу: ",
        command="отримано команду реплікації: ",
        port=" порт=",
    ),
    Pieces(  # zh_CN
        authorized="连接已授权: user=",
        replication="复制连接已授权: user=",
        database=" database=",
        application=" application_name=",
        host="已接收到连接: host=",
        disconnection="断开连接: 会话时长: ",
        command="收到的复制命令: ",
        port=" port=",
    ),
    Pieces(  # zh_TW
        authorized="連線已授權: user=",
        replication="複寫連線已授權: user=",
        database=" database=",
        application=" application_name=",
        host="連線已接收: host=",
        disconnection="中斷連線: 工作階段時間: ",
        command="收到的複寫命令: ",
        port=" port=",
    ),
)  # fmt: skip
# A line's first words: the connection lines' also carry translated field names.
_OPENING: Final = ("authorized", "replication", "host")
_HEADS: Final = ("authorized", "replication", "host", "disconnection", "command")
_TRANSLATED: Final = "^(?:" + "|".join(
    re.escape(head)
    for pieces in CONNECTION_PIECES
    for head in (getattr(pieces, name) for name in _HEADS)
    if head not in ENGLISH
) + ")"  # fmt: skip


def in_english(severity: pl.Series) -> pl.Series:
    """Severities as PostgreSQL names them, whatever its lc_messages printed."""
    if severity.is_in(SEVERITIES).all():  # (nulls too: not every record has one)
        return severity
    return severity.replace(SEVERITY_NAMES)


def connections_in_english(message: pl.Series) -> pl.Series:
    """``message`` with the translated connection and replication-command lines written
    as in English; one pass over the messages when there is none."""
    translated = message.str.contains(_TRANSLATED)
    if not translated.any():
        return message
    lines = message.filter(translated).to_frame("m")
    m = pl.col("m")
    for pieces in CONNECTION_PIECES:
        starts = {name: m.str.starts_with(getattr(pieces, name)) for name in _HEADS}
        english = m
        for name in _HEADS:  # the first words
            head, said = getattr(pieces, name), getattr(ENGLISH, name)
            if head != said:
                english = english.str.replace("^" + re.escape(head), said.replace("$", "$$"))
        opening = english
        for name in ("database", "application", "port"):  # and the connection's fields
            piece, said = getattr(pieces, name), getattr(ENGLISH, name)
            if piece != said:
                opening = opening.str.replace(piece, said, literal=True)
        lines = lines.with_columns(
            pl.when(pl.any_horizontal(starts[name] for name in _OPENING))
            .then(opening)
            .when(pl.any_horizontal(starts.values()))
            .then(english)
            .otherwise(m)
            .alias("m")
        )
    return message.clone().scatter(translated.arg_true(), lines["m"])


def refusals_in_english(message: pl.Expr) -> pl.Expr:
    """A refused login's message written as in English (``Rolle »bob« existiert nicht``:
    ``role "bob" does not exist``); any other message as it is. For the few FATAL
    records: every translation is tried in turn."""
    for pattern, english in REFUSALS:
        message = message.str.replace(pattern, english)
    return message
