package jobtype

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/internal/prose"
	"github.com/jobsd/jobsd/model"
)

// riskCategory is one entry of the local risk catalogue.
type riskCategory struct {
	name       string
	keywords   *regexp.Regexp
	mitigation string
}

// kw builds a case-insensitive whole-word pattern that also matches common
// inflections (drought → droughts, flood → flooding).
func kw(words ...string) *regexp.Regexp {
	for i, w := range words {
		words[i] = strings.ReplaceAll(regexp.QuoteMeta(w), " ", `[\s-]+`)
	}
	return regexp.MustCompile(`(?i)\b(?:` + strings.Join(words, "|") + `)(?:s|es|ed|ing|d)?\b`)
}

// riskCatalogue lists the categories the local analysis recognises, in report order.
var riskCatalogue = []riskCategory{
	{"Financial and market", kw("price", "cost", "budget", "cash flow", "debt", "loan", "credit", "interest rate", "currency", "exchange rate", "inflation", "revenue", "profit", "margin", "funding", "bankrupt", "bankruptcy", "insolvency", "demand", "competition", "competitor", "market", "volatility", "volatile"),
		"Diversify revenue and buyers, hedge or fix prices where possible (forward contracts, insurance), and keep a cash reserve for downturns."},
	{"Operational", kw("equipment", "breakdown", "outage", "downtime", "staff", "staffing", "labour", "labor", "worker", "maintenance", "capacity", "human error", "accident", "machinery", "power cut"),
		"Schedule preventive maintenance, cross-train staff, and keep documented fallback procedures and spare capacity for critical operations."},
	{"Legal and compliance", kw("regulation", "regulatory", "compliance", "law", "legal", "lawsuit", "litigation", "contract", "permit", "licence", "license", "fined", "penalty", "penalties", "gdpr", "liability", "certification"),
		"Track applicable regulations and contract obligations, assign an owner for compliance, and get legal review before commitments."},
	{"Security", kw("cyber", "cyberattack", "breach", "hack", "hacker", "malware", "ransomware", "phishing", "theft", "fraud", "unauthorised", "unauthorized", "vulnerability", "vulnerabilities", "password", "data leak", "intrusion"),
		"Enforce least-privilege access and multi-factor authentication, patch promptly, keep offline backups, and rehearse incident response."},
	{"Schedule", kw("delay", "deadline", "late", "overrun", "behind schedule", "milestone", "timeline", "postpone", "slippage"),
		"Build buffers into the plan, track milestones weekly, and agree early escalation and re-planning triggers."},
	{"Weather and climate", kw("drought", "flood", "rain", "rainfall", "storm", "heatwave", "heat wave", "frost", "hail", "climate", "weather", "cyclone", "hurricane", "wildfire", "el nino", "el niño", "dry spell"),
		"Use weather forecasts and early-warning services, adopt resilient practices or varieties, diversify locations, and insure against weather events."},
	{"Supply chain", kw("supplier", "supply", "shortage", "shipping", "logistics", "import", "export", "transport", "inventory", "stock-out", "stockout", "port", "lead time", "supplies", "fertiliser", "fertilizer", "seed"),
		"Qualify alternative suppliers, hold safety stock of critical inputs, and agree delivery terms with penalties and visibility."},
	{"Health, safety and disease", kw("injury", "injuries", "safety", "hazard", "disease", "pest", "outbreak", "pandemic", "contamination", "fatal", "infection", "locust", "armyworm"),
		"Monitor for early signs, apply prevention and safety protocols, train people, and keep treatment and emergency plans ready."},
	{"Technology", kw("software", "system failure", "bug", "legacy", "integration", "obsolete", "data loss", "server", "network"),
		"Test changes before release, monitor systems, plan replacement of legacy components, and keep tested backups and rollbacks."},
	{"Reputation", kw("reputation", "reputational", "complaint", "boycott", "negative press", "public criticism", "trust"),
		"Communicate openly with customers and stakeholders, handle complaints quickly, and prepare a crisis communication plan."},
}

var (
	severeWords   = regexp.MustCompile(`(?i)\b(severe|severely|critical|major|significant|significantly|catastrophic|fatal|total|collapse|collapsed|bankrupt|shutdown|shut down|halt|halted|crippling|devastat\w*|serious|seriously|substantial|massive|wiped out|destroyed)\b`)
	mildWords     = regexp.MustCompile(`(?i)\b(minor|small|slight|slightly|limited|negligible|modest|marginal)\b`)
	likelyWords   = regexp.MustCompile(`(?i)\b(likely|frequent|frequently|often|expected|recurring|repeated|repeatedly|again|increasing|rising|common|every year|persistent)\b`)
	unlikelyWords = regexp.MustCompile(`(?i)\b(unlikely|rare|rarely|remote|improbable)\b`)
	percentRE     = regexp.MustCompile(`(\d+(?:\.\d+)?)\s?%`)
)

type risk struct {
	Category    string `json:"category"`
	Description string `json:"description"`
	Likelihood  string `json:"likelihood"`
	Impact      string `json:"impact"`
	Mitigation  string `json:"mitigation"`
}

// riskResult is RiskAnalysisResult.
type riskResult struct {
	Risks []risk `json:"risks"`
}

func handleRiskAnalysis(ctx context.Context, env Env, input json.RawMessage) (json.RawMessage, error) {
	var in gen.RiskAnalysisInput
	if err := decodeInput(input, &in); err != nil {
		return nil, err
	}
	text, err := documentText(ctx, env, in.Text, in.DocumentJobId)
	if err != nil {
		return nil, err
	}
	focus := ""
	if in.Focus != nil {
		focus = *in.Focus
	}
	var res riskResult
	if model.IsLocal(env.Model) {
		invalid, err := model.Simulate(ctx, text+"\n"+focus)
		if err != nil {
			return nil, err
		}
		if invalid {
			return nil, invalidOutput("simulated invalid output")
		}
		res = localRisks(text, focus)
	} else {
		res, err = modelRisks(ctx, env, text, focus)
		if err != nil {
			return nil, err
		}
	}
	return marshalResult(res, "text")
}

var levels = []string{"low", "medium", "high"}

func levelIndex(l string) int {
	for i, v := range levels {
		if v == l {
			return i
		}
	}
	return 0
}

// localRisks applies the keyword catalogue to the text's sentences.
func localRisks(text, focus string) riskResult {
	sents := sentences(text)
	type found struct {
		risk
		order int
		focus bool
	}
	var all []found
	for ci, cat := range riskCatalogue {
		var hits []string
		for _, s := range sents {
			if cat.keywords.MatchString(s) {
				hits = append(hits, s)
			}
		}
		if len(hits) == 0 {
			continue
		}
		joined := strings.Join(hits, " ")
		like := 0
		switch {
		case len(hits) >= 4:
			like = 2
		case len(hits) >= 2:
			like = 1
		}
		if likelyWords.MatchString(joined) {
			like = min(like+1, 2)
		}
		if unlikelyWords.MatchString(joined) {
			like = max(like-1, 0)
		}
		impact := 1
		switch {
		case severeWords.MatchString(joined) || bigPercent(joined):
			impact = 2
		case mildWords.MatchString(joined):
			impact = 0
		}
		// Quote the most telling sentence: one with a severity word, else the first.
		lead := hits[0]
		for _, h := range hits {
			if severeWords.MatchString(h) || bigPercent(h) {
				lead = h
				break
			}
		}
		desc := fmt.Sprintf("%s risk: %q", cat.name, prose.Truncate(lead, maxQuoteRunes))
		if len(hits) > 1 {
			desc += fmt.Sprintf(" (mentioned in %d sentences)", len(hits))
		}
		all = append(all, found{
			risk:  risk{Category: cat.name, Description: desc, Likelihood: levels[like], Impact: levels[impact], Mitigation: cat.mitigation},
			order: ci,
			focus: focus != "" && (cat.keywords.MatchString(focus) || strings.Contains(strings.ToLower(focus), strings.ToLower(strings.Fields(cat.name)[0]))),
		})
	}
	sort.SliceStable(all, func(a, b int) bool {
		if all[a].focus != all[b].focus {
			return all[a].focus
		}
		sa := (levelIndex(all[a].Likelihood) + 1) * (levelIndex(all[a].Impact) + 1)
		sb := (levelIndex(all[b].Likelihood) + 1) * (levelIndex(all[b].Impact) + 1)
		if sa != sb {
			return sa > sb
		}
		return all[a].order < all[b].order
	})
	res := riskResult{Risks: make([]risk, 0, len(all))}
	for _, f := range all {
		res.Risks = append(res.Risks, f.risk)
	}
	return res
}

// bigPercent reports a percentage of 20 or more (a large change).
func bigPercent(s string) bool {
	for _, m := range percentRE.FindAllStringSubmatch(s, -1) {
		if v, err := strconv.ParseFloat(m[1], 64); err == nil && v >= 20 {
			return true
		}
	}
	return false
}

const riskSystem = `You are a risk analyst. Identify the distinct risks in the text (at most 20).
Answer with this JSON shape: {"risks":[{"category":"<short category>","description":"<the risk, citing the text>","likelihood":"low|medium|high","impact":"low|medium|high","mitigation":"<concrete mitigation>"}]}. Use an empty list when there are no risks.`

const maxModelRisks = 50

// modelRisks asks the model and validates its answer strictly.
func modelRisks(ctx context.Context, env Env, text, focus string) (riskResult, error) {
	prompt := "Text:\n<<<\n" + prose.CutBytes(text, maxModelDocChars) + "\n>>>"
	if strings.TrimSpace(focus) != "" {
		prompt = "Focus: " + focus + "\n\n" + prompt
	}
	var out struct {
		Risks *[]risk `json:"risks"`
	}
	if err := askJSON(ctx, env, riskSystem, prompt, &out); err != nil {
		return riskResult{}, err
	}
	if out.Risks == nil {
		return riskResult{}, invalidOutput("the answer has no risks list")
	}
	if len(*out.Risks) > maxModelRisks {
		return riskResult{}, invalidOutput("the answer lists too many risks")
	}
	res := riskResult{Risks: make([]risk, 0, len(*out.Risks))}
	for _, r := range *out.Risks {
		r.Likelihood, r.Impact = strings.ToLower(r.Likelihood), strings.ToLower(r.Impact)
		if levelIndex(r.Likelihood) == 0 && r.Likelihood != "low" || levelIndex(r.Impact) == 0 && r.Impact != "low" {
			return riskResult{}, invalidOutput("likelihood and impact must be low, medium or high")
		}
		if strings.TrimSpace(r.Category) == "" || strings.TrimSpace(r.Description) == "" || strings.TrimSpace(r.Mitigation) == "" {
			return riskResult{}, invalidOutput("a risk lacks a category, description or mitigation")
		}
		r.Category, r.Description, r.Mitigation = prose.Truncate(r.Category, 100), prose.Truncate(r.Description, 2000), prose.Truncate(r.Mitigation, 2000)
		res.Risks = append(res.Risks, r)
	}
	return res, nil
}
