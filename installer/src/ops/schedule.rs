//! Cron schedules as systemd timers: scheduled etcd backups run on the control-plane nodes
//! themselves (a timer and a oneshot service), so they go on when the operator's machine is
//! off. Operators write cron; systemd reads `OnCalendar=`; this module translates, with an
//! optional leading seconds field for short intervals.

/// One field of a cron expression: its name, bounds, and how systemd writes it.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
};
const DAY: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
};
const WEEKDAY: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
};

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn value(field: &Field, text: &str) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    let named = match field.name {
        "month" => MONTHS
            .iter()
            .position(|m| *m == lower)
            .map(|i| i as u32 + 1),
        "day of week" => WEEKDAYS
            .iter()
            .position(|d| d.to_ascii_lowercase() == lower)
            .map(|i| i as u32),
        _ => None,
    };
    let number = match named {
        Some(number) => number,
        None => text
            .parse::<u32>()
            .map_err(|_| format!("{}: {text:?} is not a number", field.name))?,
    };
    if number < field.min || number > field.max {
        return Err(format!(
            "{}: {number} is outside {}–{}",
            field.name, field.min, field.max
        ));
    }
    Ok(number)
}

/// The values a cron field selects, or `None` for every value (`*`).
fn values(field: &Field, text: &str) -> Result<Option<Vec<u32>>, String> {
    if text == "*" {
        return Ok(None);
    }
    let mut selected = Vec::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    format!("{}: step {step:?} must be a positive number", field.name)
                })?;
                (range, step)
            }
            None => (part, 1),
        };
        let (first, last) = match range {
            "*" => (field.min, field.max),
            _ => match range.split_once('-') {
                Some((a, b)) => (value(field, a)?, value(field, b)?),
                // `5/15` means from 5 to the end, every 15.
                None if step > 1 => (value(field, range)?, field.max),
                None => {
                    let v = value(field, range)?;
                    (v, v)
                }
            },
        };
        if first > last {
            return Err(format!("{}: range {range} runs backwards", field.name));
        }
        selected.extend((first..=last).step_by(step as usize));
    }
    if field.name == "day of week" {
        // 7 is Sunday too.
        for v in &mut selected {
            *v %= 7;
        }
    }
    selected.sort_unstable();
    selected.dedup();
    Ok(Some(selected))
}

fn join(values: &Option<Vec<u32>>, width: usize) -> String {
    match values {
        None => "*".into(),
        Some(values) => values
            .iter()
            .map(|v| format!("{v:0width$}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Translates a cron expression (`minute hour day month weekday`, or with a leading seconds
/// field) into systemd's `OnCalendar=` form.
pub fn on_calendar(cron: &str) -> Result<String, String> {
    let fields: Vec<&str> = cron.split_whitespace().collect();
    let (second, rest) = match fields.len() {
        5 => (None, &fields[..]),
        6 => (Some(fields[0]), &fields[1..]),
        n => {
            return Err(format!(
                "{cron:?} has {n} fields; cron has 5 (minute hour day month weekday), or 6 with seconds first"
            ));
        }
    };
    let second = match second {
        Some(text) => values(&SECOND, text)?,
        None => Some(vec![0]),
    };
    let minute = values(&MINUTE, rest[0])?;
    let hour = values(&HOUR, rest[1])?;
    let day = values(&DAY, rest[2])?;
    let month = values(&MONTH, rest[3])?;
    let weekday = values(&WEEKDAY, rest[4])?;
    if day.is_some() && weekday.is_some() {
        // cron runs when either matches; systemd only when both do.
        return Err(
            "give a day of month or a day of week, not both (cron and systemd read the pair differently)"
                .into(),
        );
    }
    let weekday = match &weekday {
        None => String::new(),
        Some(days) => format!(
            "{} ",
            days.iter()
                .map(|d| WEEKDAYS[*d as usize])
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    Ok(format!(
        "{weekday}*-{}-{} {}:{}:{}",
        join(&month, 2),
        join(&day, 2),
        join(&hour, 2),
        join(&minute, 2),
        join(&second, 2)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_becomes_on_calendar() {
        assert_eq!(on_calendar("0 3 * * *").unwrap(), "*-*-* 03:00:00");
        assert_eq!(
            on_calendar("*/15 * * * *").unwrap(),
            "*-*-* *:00,15,30,45:00"
        );
        assert_eq!(
            on_calendar("30 2 * * mon-fri").unwrap(),
            "Mon,Tue,Wed,Thu,Fri *-*-* 02:30:00"
        );
        assert_eq!(
            on_calendar("0 0 1 */3 *").unwrap(),
            "*-01,04,07,10-01 00:00:00"
        );
        assert_eq!(on_calendar("0 12 * * 0,7").unwrap(), "Sun *-*-* 12:00:00");
        assert_eq!(
            on_calendar("*/10 * * * * *").unwrap(),
            "*-*-* *:*:00,10,20,30,40,50"
        );
        assert_eq!(
            on_calendar("5/20 1-3 * jan *").unwrap(),
            "*-01-* 01,02,03:05,25,45:00"
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        assert!(on_calendar("* * *").unwrap_err().contains("has 3 fields"));
        assert!(
            on_calendar("60 * * * *")
                .unwrap_err()
                .contains("minute: 60 is outside 0–59")
        );
        assert!(on_calendar("0 3 1 * mon").unwrap_err().contains("not both"));
        assert!(on_calendar("*/0 * * * *").unwrap_err().contains("positive"));
        assert!(
            on_calendar("5-1 * * * *")
                .unwrap_err()
                .contains("backwards")
        );
        assert!(
            on_calendar("x * * * *")
                .unwrap_err()
                .contains("not a number")
        );
    }
}
