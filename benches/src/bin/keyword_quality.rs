//! How good are the keyword rules alone? For each category: the share of the
//! listed domains they catch (recall), and how many popular domains they catch
//! wrongly (false positives: caught for a category but on no list of it).
//!
//!     cargo run --release -p schoolgate-benches --bin keyword_quality [-- --show N]

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use schoolgate_benches::{popular_domains, shared_data};
use schoolgate_classifier::Category;
use schoolgate_classifier::keywords::KeywordRules;
use schoolgate_lists::{Entry, Format};

fn main() -> Result<()> {
    let show: usize = std::env::args()
        .skip_while(|a| a != "--show")
        .nth(1)
        .map_or(Ok(0), |s| s.parse())?;
    let data = shared_data()?;
    let rules = KeywordRules::builtin();
    // Every listed domain per category, from every list in the shared data.
    let mut listed: HashMap<Category, HashSet<String>> = HashMap::new();
    schoolgate_lists::read_ut1_folder(&data.join("lists/ut1"), &mut |name, e| {
        if let (Some(c), Entry::Domain(d)) = (Category::from_ut1(name), e) {
            listed.entry(c).or_default().insert(d.to_owned());
        }
    })?;
    for (file, c) in [
        ("blocklistproject/drugs.txt.gz", Category::Drugs),
        ("blocklistproject/gambling.txt.gz", Category::Gambling),
        ("blocklistproject/piracy.txt.gz", Category::Piracy),
        ("porntop/adult.txt.gz", Category::Pornography),
    ] {
        schoolgate_lists::read_file(&data.join("lists").join(file), Format::Domains, &mut |e| {
            if let Entry::Domain(d) = e {
                listed.entry(c).or_default().insert(d.to_owned());
            }
        })?;
    }
    let popular = popular_domains()?;
    let mut fp: HashMap<Category, Vec<String>> = HashMap::new();
    let mut any_fp = 0usize;
    for d in &popular {
        let m = rules.scan_url(d, "");
        let mut wrong = false;
        for c in m.categories.iter() {
            if !listed.get(&c).is_some_and(|l| l.contains(d)) {
                fp.entry(c).or_default().push(d.clone());
                wrong = true;
            }
        }
        any_fp += usize::from(wrong);
    }
    println!(
        "keyword rules: {} rules; popular domains: {} (benign/top.txt.gz)\n",
        rules.len(),
        popular.len()
    );
    println!(
        "| category | listed domains | caught by keywords | recall | popular domains caught but on no list of it | share of popular |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut cats: Vec<_> = listed.keys().copied().collect();
    cats.sort();
    for c in cats {
        let l = &listed[&c];
        let caught = l
            .iter()
            .filter(|d| rules.scan_url(d, "").categories.contains(c))
            .count();
        let wrong = fp.get(&c).map_or(0, Vec::len);
        if caught == 0 && wrong == 0 {
            continue;
        }
        println!(
            "| {} | {} | {} | {:.1}% | {} | {:.3}% |",
            c.name(),
            l.len(),
            caught,
            100.0 * caught as f64 / l.len().max(1) as f64,
            wrong,
            100.0 * wrong as f64 / popular.len() as f64
        );
    }
    println!(
        "\npopular domains caught for a category they are not listed in: {} of {} ({:.3}%)",
        any_fp,
        popular.len(),
        100.0 * any_fp as f64 / popular.len() as f64
    );
    if show > 0 {
        for (c, v) in &fp {
            println!(
                "\n{}: {}",
                c.name(),
                v.iter().take(show).cloned().collect::<Vec<_>>().join(" ")
            );
        }
    }
    Ok(())
}
