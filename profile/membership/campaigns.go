package membership

import "sync/atomic"

// Campaigns answers the rules' received and converted terms: whether
// email is a treated recipient of campaign id of site, or (converted) a
// recipient that converted. campaign.Store implements it; the store is
// made after the Engine (it reads segments), so it is set by
// SetCampaigns.
type Campaigns interface {
	InCampaign(site, id, email string, converted bool) (bool, error)
}

// SetCampaigns sets what answers received and converted; until it is
// called, both are false.
func (e *Engine) SetCampaigns(c Campaigns) { e.campaigns.Store(&c) }

// siteCampaigns answers received and converted for the rules of one
// evaluation (segment.Campaigns), as siteLists does in_list: each term
// looked up once per reevaluate, the first error failing the evaluation.
type siteCampaigns struct {
	src  *atomic.Pointer[Campaigns]
	site string
	err  error
	memo []campaignAnswer
}

type campaignAnswer struct {
	id        string
	converted bool
	in        bool
}

func (sc *siteCampaigns) reset(site string) {
	sc.site, sc.err = site, nil
	sc.memo = sc.memo[:0]
}

// InCampaign implements segment.Campaigns.
func (sc *siteCampaigns) InCampaign(id, email string, converted bool) bool {
	for _, a := range sc.memo {
		if a.id == id && a.converted == converted {
			return a.in
		}
	}
	c := sc.src.Load()
	if c == nil {
		return false
	}
	in, err := (*c).InCampaign(sc.site, id, email, converted)
	if err != nil {
		if sc.err == nil {
			sc.err = err
		}
		return false
	}
	sc.memo = append(sc.memo, campaignAnswer{id: id, converted: converted, in: in})
	return in
}
