package main

import "github.com/affinityhq/affinity/tracker"

// parseSites returns the sites of --site with their --site-rate limits.
func (c *collectorFlags) parseSites() ([]tracker.Site, error) {
	sites, err := tracker.ParseSites(c.sites.values)
	if err != nil {
		return nil, err
	}
	if err := tracker.ParseSiteRates(c.siteRates.values, sites); err != nil {
		return nil, err
	}
	return sites, nil
}
